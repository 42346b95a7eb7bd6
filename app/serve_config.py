"""Render the Ray Serve config (serve_config.yaml / RayService serveConfigV2) from `configs/`.

One function feeds both, so neither can drift from the profile it names.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import yaml

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
    """
    root = root or config_dir()
    digest = hashlib.sha256()
    for path in (root / "routing.yaml", root / "server.yaml", root / "profiles" / f"{profile}.yaml"):
        digest.update(path.name.encode() + b"\0" + (path.read_bytes() if path.is_file() else b"") + b"\0")
    return digest.hexdigest()[:16]


def render_serve_config(config: TierserveConfig, *, offline: bool = True,
                        http_host: str = "127.0.0.1", http_port: int = 8000) -> dict[str, Any]:
    """The Serve config document for one profile."""
    env = dict(OFFLINE_ENV) if offline else {}
    app: dict[str, Any] = {
        "name": APP_NAME,
        "route_prefix": config.server.route_prefix,
        "import_path": IMPORT_PATH,
        "args": {"profile": config.profile, "config_digest": config_digest(config.profile)},
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
