"""Where the console is, as `tierserve up` prints it (tooling side: no Serve imports)."""

from __future__ import annotations

from app.config.schema import TierserveConfig
from app.keys.secrets import AdminKeys


def console_line(config: TierserveConfig, base_url: str) -> str:
    """The console's URL and what opening it takes, or why it is not served."""
    mode = config.server.console.mode
    if mode == "off":
        return "off (server.console.mode)"
    keys = config.server.keys
    if not AdminKeys.from_env(keys.admin_keys_env, keys.admin_key_file_env).enabled:
        return (f"{base_url}/console/ (open on loopback: no admin key is set)" if mode == "loopback"
                else f"off until an admin key is set ({keys.admin_keys_env})")
    return f"{base_url}/console/ (paste an admin key from {keys.admin_keys_env})"
