"""Render the Ray Serve config (serve_config.yaml / RayService serveConfigV2) from `configs/`.

One function feeds both, so neither can drift from the profile it names.
"""

from __future__ import annotations

from typing import Any

import yaml

from app.config.schema import TierserveConfig

APP_NAME = "tierserve"
IMPORT_PATH = "app.graph:build_app"

# Keep vLLM and Hugging Face from reaching for the network or usage servers.
OFFLINE_ENV = {"HF_HUB_OFFLINE": "1", "VLLM_NO_USAGE_STATS": "1", "DO_NOT_TRACK": "1"}


def render_serve_config(config: TierserveConfig, *, offline: bool = True,
                        http_host: str = "127.0.0.1", http_port: int = 8000) -> dict[str, Any]:
    """The Serve config document for one profile."""
    env = dict(OFFLINE_ENV) if offline else {}
    app: dict[str, Any] = {
        "name": APP_NAME,
        "route_prefix": config.server.route_prefix,
        "import_path": IMPORT_PATH,
        "args": {"profile": config.profile},
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
