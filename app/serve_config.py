"""Render the Ray Serve config (serve_config.yaml / RayService serveConfigV2) from `configs/`.

One function feeds both, so neither can drift from the profile it names.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import yaml

from app.config.live import LIVE_ROUTING_KEYS, router_user_config
from app.config.loader import config_dir
from app.config.schema import TierserveConfig

APP_NAME = "tierserve"
IMPORT_PATH = "app.graph:build_app"

# Keep vLLM and Hugging Face from reaching for the network or usage servers.
OFFLINE_ENV = {"HF_HUB_OFFLINE": "1", "VLLM_NO_USAGE_STATS": "1", "DO_NOT_TRACK": "1"}


def config_digest(profile: str, root: Path | None = None) -> str:
    """A short hash of the files a profile is made of, for the app's `args`.

    Serve rebuilds an application (a rolling update of its replicas) only when its import
    path, runtime env or args change; the builder reads configs/ itself, so without this a
    `serve deploy` after editing configs/ would change nothing. Files, not the loaded
    config: a new schema default ships with new code, not with a config change.

    The live routing settings (app/config/live.py) are left out: they reach the router as its
    user_config, without a rebuild.
    """
    root = root or config_dir()
    digest = hashlib.sha256()
    for path in (root / "routing.yaml", root / "server.yaml", root / "profiles" / f"{profile}.yaml"):
        content = path.read_bytes() if path.is_file() else b""
        if path.name != "server.yaml":
            content = _without_live_routing(content, nested=path.parent.name == "profiles")
        digest.update(path.name.encode() + b"\0" + content + b"\0")
    return digest.hexdigest()[:16]


def _without_live_routing(content: bytes, nested: bool) -> bytes:
    """A routing file (or a profile, whose `routing:` holds them) minus the live keys."""
    data = yaml.safe_load(content) or {}
    routing = data.get("routing") if nested else data
    if not isinstance(routing, dict) or not set(routing) & set(LIVE_ROUTING_KEYS):
        return content
    for key in LIVE_ROUTING_KEYS:
        routing.pop(key, None)
    return yaml.safe_dump(data, sort_keys=True).encode()


def render_serve_config(config: TierserveConfig, *, offline: bool = True,
                        http_host: str = "127.0.0.1", http_port: int = 8000) -> dict[str, Any]:
    """The Serve config document for one profile."""
    env = dict(OFFLINE_ENV) if offline else {}
    app: dict[str, Any] = {
        "name": APP_NAME,
        "route_prefix": config.server.route_prefix,
        "import_path": IMPORT_PATH,
        "args": {"profile": config.profile, "config_digest": config_digest(config.profile)},
        # Changing only these is a lightweight update: no replica restarts (app/config/live.py).
        "deployments": [{"name": "router", "user_config": router_user_config(config)}],
    }
    if env:
        app["runtime_env"] = {"env_vars": env}
    return {
        "proxy_location": "EveryNode",
        "http_options": {"host": http_host, "port": http_port},
        "applications": [app],
    }


def dump_serve_config(doc: dict[str, Any], profile: str) -> str:
    header = (f"# Generated from configs/ (profile {profile!r}) by "
              f"`tierserve config render --profile {profile}`. Do not edit by hand.\n")
    return header + yaml.safe_dump(doc, sort_keys=False)


def profile_of(serve_config_text: str) -> str:
    """The configs/ profile a rendered Serve config was made from."""
    doc = yaml.safe_load(serve_config_text) or {}
    for app in doc.get("applications") or []:
        if app.get("import_path") == IMPORT_PATH:
            return app["args"]["profile"]
    raise ValueError(f"no {IMPORT_PATH} application with args.profile in this Serve config")
