"""Elastic tiers at the ingress: suspended tiers and tiers scaled to zero.

- A suspended tier (autoscaling.max_replicas 0) never gets a call: a request that names it
  gets an explicit OpenAI-style error at once; an automatic decision goes to another tier.
- A tier with no running replica (scaled to zero, or its node lost) is cold: Serve queues a
  call at the handle while a replica and its engine start, so the call's first-output timeout
  grows by the tier's cold_start_timeout_s instead of failing a request that would be served.
"""

from __future__ import annotations

import asyncio
import logging

from app.config.schema import TierserveConfig
from app.http.errors import OpenAIError
from app.protocol.internal import RouteDecision

logger = logging.getLogger("ray.serve.tierserve.elastic")

# Reasons for which the client chose the tier itself (model name or tier header).
EXPLICIT_REASONS = frozenset({"model", "header"})
# A suspended tier stays so until an operator resumes it: retrying in a second is pointless.
SUSPENDED_RETRY_AFTER_S = 300


def suspended_tiers(config: TierserveConfig) -> frozenset[str]:
    return frozenset(t.name for t in config.tiers if t.autoscaling.suspended)


def avoid_suspended(decision: RouteDecision, config: TierserveConfig) -> RouteDecision:
    """The decision with suspended tiers out of it. A tier the client named that is suspended
    is an error naming it; an automatic choice moves to its first usable fallback, else the
    default tier."""
    suspended = suspended_tiers(config)
    if not suspended:
        return decision
    fallbacks = [t for t in decision.fallbacks if t not in suspended]
    if decision.tier not in suspended:
        if fallbacks == decision.fallbacks:
            return decision
        return decision.model_copy(update={"fallbacks": fallbacks})
    if decision.reason.removeprefix("key:") in EXPLICIT_REASONS:
        raise OpenAIError(503, f"Tier '{decision.tier}' is suspended (it has no replicas until it is "
                               "resumed); use model 'auto' or another model.",
                          code="tier_suspended", param="model", retry_after_s=SUSPENDED_RETRY_AFTER_S)
    usable = fallbacks or [t.name for t in config.tiers
                           if t.name == config.routing.default_tier and t.name not in suspended]
    if not usable:
        raise OpenAIError(503, f"Tier '{decision.tier}' is suspended and no other tier may serve "
                               "this request.", code="tier_suspended", retry_after_s=SUSPENDED_RETRY_AFTER_S)
    return decision.model_copy(update={"tier": usable[0], "reason": f"fallback:suspended:{decision.tier}",
                                       "fallbacks": usable[1:]})


class RunningReplicas:
    """Per tier, whether it has a RUNNING replica, from Serve's status polled every `poll_s`
    (only while some tier may be at zero). Unknown counts as cold: waiting longer for a tier
    that turns out warm costs nothing, failing one that is starting loses the request."""

    def __init__(self, config: TierserveConfig, app_name: str, poll_s: float) -> None:
        self._deployments = {t.deployment_name: t.name for t in config.tiers}
        self._app_name = app_name
        self._poll_s = poll_s
        self._running: dict[str, int] = {}
        self._task: asyncio.Task | None = None

    def cold(self, tier: str) -> bool:
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._watch())
        return self._running.get(tier, 0) == 0

    async def _watch(self) -> None:
        from ray import serve

        while True:
            try:
                status = await asyncio.to_thread(serve.status)
                app = status.applications.get(self._app_name)
                deployments = app.deployments if app else {}
                # Serve's ReplicaState is a str enum with no public import: look it up by value.
                self._running = {tier: deployments[name].replica_states.get("RUNNING", 0)  # type: ignore[call-overload]
                                 for name, tier in self._deployments.items() if name in deployments}
            except Exception as exc:  # the controller may be restarting; keep the last view
                logger.warning("could not read Serve status: %r", exc)
            await asyncio.sleep(self._poll_s)
