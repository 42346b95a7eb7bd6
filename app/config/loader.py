"""Load a profile's configuration from `configs/` with errors that name file and field.

Layout: `configs/routing.yaml` and `configs/server.yaml` hold what all profiles
share; `configs/profiles/<name>.yaml` holds the tiers and may override any key
of `routing`/`server` (merged key by key).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from app.config.schema import TierserveConfig

REPO_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_CONFIG_DIR = REPO_ROOT / "configs"


class ConfigError(ValueError):
    """A configuration file is missing, unreadable or invalid."""


def config_dir() -> Path:
    return Path(os.environ.get("TIERSERVE_CONFIG_DIR", DEFAULT_CONFIG_DIR))


def list_profiles(root: Path | None = None) -> list[str]:
    return sorted(p.stem for p in ((root or config_dir()) / "profiles").glob("*.yaml"))


def _read_yaml(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise ConfigError(f"{path}: file not found")
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from exc
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: top level must be a mapping")
    return data


def _merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in override.items():
        # A plugin named differently is another plugin: its params replace, never mix.
        other_plugin = isinstance(value, dict) and isinstance(out.get(key), dict) and \
            "name" in value and value["name"] != out[key].get("name")
        if isinstance(value, dict) and isinstance(out.get(key), dict) and not other_plugin:
            out[key] = _merge(out[key], value)
        else:
            out[key] = value
    return out


def _resolve_paths(data: dict[str, Any]) -> None:
    """Relative local model paths are relative to the repo root, wherever Ray runs us."""
    for tier in data.get("tiers") or []:
        src = tier.get("model_source") if isinstance(tier, dict) else None
        if isinstance(src, str) and src.startswith(("./", "models/")):
            models_dir = os.environ.get("TIERSERVE_MODELS_DIR")
            rel = Path(src)
            if models_dir and rel.parts[0] == "models":
                tier["model_source"] = str(Path(models_dir, *rel.parts[1:]))
            else:
                tier["model_source"] = str((REPO_ROOT / rel).resolve())


def _sets(data: Any, loc: tuple) -> bool:
    """Whether `data` itself defines the value at `loc` (or the innermost mapping above it)."""
    for key in loc:
        if not isinstance(data, dict) or key not in data:
            return False
        data = data[key]
    return True


def source_of(profile: str, loc: tuple[str, ...], root: Path | None = None) -> str:
    """The file a profile's value at `loc` (e.g. ("routing", "plugins")) comes from: the
    profile when it sets it, else the shared file; for errors found after loading."""
    root = root or config_dir()
    profile_path = root / "profiles" / f"{profile}.yaml"
    if not profile_path.is_file():
        return f"(profile {profile!r}, not from a file)"
    shared = {"routing": root / "routing.yaml", "server": root / "server.yaml"}
    if loc and loc[0] in shared and not _sets(_read_yaml(profile_path), loc):
        return str(shared[loc[0]])
    return str(profile_path)


def load_config(profile: str, root: Path | None = None) -> TierserveConfig:
    """Load and validate one profile; raise ConfigError naming the file and field."""
    root = root or config_dir()
    profile_path = root / "profiles" / f"{profile}.yaml"
    if not profile_path.is_file():
        raise ConfigError(
            f"{profile_path}: unknown profile {profile!r}; known: {list_profiles(root)}"
        )
    sources = {"routing": root / "routing.yaml", "server": root / "server.yaml"}
    shared = {key: _read_yaml(path) for key, path in sources.items()}
    prof = _read_yaml(profile_path)
    data = {"profile": profile, **shared}
    data = _merge(data, prof)
    _resolve_paths(data)
    try:
        return TierserveConfig.model_validate(data)
    except ValidationError as exc:
        lines = []
        for err in exc.errors():
            loc = ".".join(str(p) for p in err["loc"])
            top = str(err["loc"][0]) if err["loc"] else ""
            # A key the profile sets is blamed on the profile, the rest on the shared file.
            in_profile = top not in sources or _sets(prof, err["loc"])
            path = profile_path if in_profile else sources[top]
            lines.append(f"{path}: {loc or '(top level)'}: {err['msg']}")
        raise ConfigError("invalid configuration:\n  " + "\n  ".join(lines)) from None
