"""Routing settings that reach running routers without a restart.

They travel as the router deployment's `user_config` in the rendered Serve config: a change
to them alone is a lightweight update (Serve calls the router's `reconfigure`), so swapping
the scorer artifact or its thresholds (`tierserve route-promote`) restarts nothing, tiers
least of all. The app's config digest leaves them out for the same reason.

The scorer artifacts they name travel with them (`artifacts:`, app/config/live_artifacts.py),
so a router replica on a node without the file loads the promoted one all the same.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict

from app.config.live_artifacts import CarriedArtifact, carry, materialize
from app.config.loader import ConfigError, source_of
from app.config.schema import RoutingConfig, TierserveConfig

# Keys of `routing` (configs/routing.yaml, a profile's `routing:`) the router applies live.
LIVE_ROUTING_KEYS = ("learned", "feedback", "threshold", "thresholds")


class RouterUserConfig(BaseModel):
    """The router deployment's user_config."""

    model_config = ConfigDict(extra="forbid")
    routing: dict[str, Any] = {}  # LIVE_ROUTING_KEYS only
    artifacts: dict[str, CarriedArtifact] = {}  # by the path `learned` names


def router_user_config(config: TierserveConfig) -> dict[str, Any]:
    """The router deployment's user_config: the live routing settings and the scorer artifacts
    they name, as JSON (ConfigError if an artifact cannot be read here)."""
    artifacts = {}
    for key in ("artifact", "shadow_artifact"):
        if not (path := getattr(config.routing.learned, key)):
            continue
        try:
            artifacts[path] = carry(path).model_dump(mode="json", exclude_none=True)
        except (OSError, ValueError) as exc:
            where = source_of(config.profile, ("routing", "learned", key))
            raise ConfigError(f"{where}: routing.learned.{key}: cannot read {path}: {exc}") from exc
    return {"routing": config.routing.model_dump(mode="json", include=set(LIVE_ROUTING_KEYS)),
            "artifacts": artifacts}


def apply_router_user_config(config: TierserveConfig, user_config: dict[str, Any] | None) -> TierserveConfig:
    """`config` with the live routing settings of `user_config` (a ValueError if invalid); the
    artifacts it carries are checked against their sha256 and named by their path on this node."""
    live = RouterUserConfig.model_validate(user_config or {})
    unknown = set(live.routing) - set(LIVE_ROUTING_KEYS)
    if unknown:
        raise ValueError(f"router user_config: not live routing settings: {sorted(unknown)}")
    data = config.routing.model_dump()
    data.update(live.routing)
    routing = RoutingConfig.model_validate(data)
    stray = set(live.artifacts) - {routing.learned.artifact, routing.learned.shadow_artifact}
    if stray:
        raise ValueError(f"router user_config: artifacts no learned setting names: {sorted(stray)}")
    local = {path: materialize(path, artifact) for path, artifact in live.artifacts.items()}
    named = {key: local[path] for key in ("artifact", "shadow_artifact")
             if (path := getattr(routing.learned, key)) in local}
    routing = routing.model_copy(update={"learned": routing.learned.model_copy(update=named)})
    return config.model_copy(update={"routing": routing})
