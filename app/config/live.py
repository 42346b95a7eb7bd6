"""Routing settings that reach running routers without a restart.

They travel as the router deployment's `user_config` in the rendered Serve config: a change
to them alone is a lightweight update (Serve calls the router's `reconfigure`), so swapping
the scorer artifact or its thresholds (`tierserve route-promote`) restarts nothing, tiers
least of all. The app's config digest leaves them out for the same reason.
"""

from __future__ import annotations

from typing import Any

from app.config.schema import RoutingConfig, TierserveConfig

# Keys of `routing` (configs/routing.yaml, a profile's `routing:`) the router applies live.
LIVE_ROUTING_KEYS = ("learned", "feedback", "threshold", "thresholds")


def router_user_config(config: TierserveConfig) -> dict[str, Any]:
    """The router deployment's user_config: the live routing settings, as JSON."""
    return {"routing": config.routing.model_dump(mode="json", include=set(LIVE_ROUTING_KEYS))}


def apply_router_user_config(config: TierserveConfig, user_config: dict[str, Any] | None) -> TierserveConfig:
    """`config` with the live routing settings of `user_config` (a ValueError if invalid)."""
    live = (user_config or {}).get("routing") or {}
    unknown = set(live) - set(LIVE_ROUTING_KEYS)
    if unknown:
        raise ValueError(f"router user_config: not live routing settings: {sorted(unknown)}")
    data = config.routing.model_dump()
    data.update(live)
    routing = RoutingConfig.model_validate(data)
    return config.model_copy(update={"routing": routing})
