"""The router deployment: one decision per request, logged as one JSON line.

Tier health comes from two sources: Serve's replica states, polled in the
background (a tier with no running replica is skipped), and failures the
ingress reports (a tier that failed before its first token cools down).
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from typing import Any

from ray import serve

from app.batching import SHUTDOWN_FLUSH_S
from app.config.live import apply_router_user_config
from app.config.schema import TierserveConfig
from app.protocol.internal import RouteDecision, RouteRequest
from app.routing.affinity import make_store
from app.routing.assemble import build_pipeline
from app.telemetry.routing import decision_span
from app.telemetry.tracing import now_ns
from app.telemetry.tracing import setup as setup_tracing
from deployments.metrics import RouterMetrics, reason_kind
from deployments.traffic import TrafficRecorder

log = logging.getLogger("ray.serve.tierserve.routing")


def tiers_without_replicas(config: TierserveConfig, app_status) -> set[str]:
    """Tiers that should have a replica but have none running (scale-to-zero ones don't count)."""
    down = set()
    for tier in config.tiers:
        dep = app_status.deployments.get(tier.deployment_name) if app_status else None
        if dep is None or tier.autoscaling.min_replicas < 1:
            continue
        if dep.replica_states.get("RUNNING", 0) == 0:
            down.add(tier.name)
    return down


class Router:
    async def __init__(self, config: TierserveConfig) -> None:  # type: ignore[misc]  # Serve awaits it
        context = serve.get_replica_context()
        # Serve hands this replica its user_config (reconfigure) right after __init__. Build from
        # it now, once: the scorer artifact the configs on this node name may exist only in it
        # (app/config/live_artifacts.py). `_deployment_config` is Serve's own (Ray pinned).
        self._user_config = getattr(getattr(context, "_deployment_config", None), "user_config", None)
        if self._user_config is not None:
            config = apply_router_user_config(config, self._user_config)
        self._config = config
        aff = config.routing.affinity  # one store for the life of the replica (reconfigure keeps it)
        self._store = make_store(aff.store_url, aff.ttl_s, aff.max_sessions) if aff.enabled else None
        self._pipeline = build_pipeline(config, store=self._store)
        self._traffic = TrafficRecorder(config, await asyncio.to_thread(TrafficRecorder.load_shadow, config))
        self._cooldown_s = max(1.0, config.routing.fallback.backoff_ms / 1000 * 20)
        self._unhealthy_until: dict[str, float] = {}
        self._no_replicas: set[str] = set()
        # By operators (console), or by config (max_replicas 0): auto traffic goes elsewhere.
        self._suspended: set[str] = {t.name for t in config.tiers if t.autoscaling.suspended}
        self._tracing = setup_tracing(config.server.tracing, "router")
        self._metrics = RouterMetrics()
        self._app_name = context.app_name
        self._watcher = asyncio.create_task(self._watch_replicas())

    async def __del__(self) -> None:
        """Serve awaits this on replica shutdown (after the drain): decision records still
        queued are written."""
        self._watcher.cancel()
        await self._traffic.close(SHUTDOWN_FLUSH_S)

    async def reconfigure(self, user_config: dict) -> None:
        """Serve's lightweight update (the rendered `user_config`): the live routing settings,
        e.g. a promoted scorer artifact and its thresholds, without restarting anything."""
        if user_config == self._user_config:
            return  # applied in __init__ (or a new rank only)
        config = apply_router_user_config(self._config, user_config)
        pipeline = await asyncio.to_thread(build_pipeline, config, store=self._store)
        shadow = await asyncio.to_thread(TrafficRecorder.load_shadow, config)
        self._config, self._pipeline, self._user_config = config, pipeline, user_config
        self._traffic.reconfigure(config, shadow)
        log.warning(json.dumps({"event": "router_reconfigured", "scorer_version": pipeline.scorer_version,
                                "shadow_version": shadow.version if shadow else None,
                                "thresholds": config.routing.thresholds}))

    async def _watch_replicas(self) -> None:
        while True:
            await self._read_replicas()
            # Re-set every poll: Ray drops a gauge that has not been set for a while.
            for i, t in enumerate(getattr(self._pipeline.picker.plugin, "thresholds", ())):
                self._metrics.threshold.set(t, tags={"boundary": str(i)})
            await asyncio.sleep(self._config.routing.fallback.health_poll_s)

    async def _read_replicas(self) -> None:
        try:
            status = await asyncio.to_thread(serve.status)
            down = tiers_without_replicas(self._config, status.applications.get(self._app_name))
            if down != self._no_replicas:
                log.warning(json.dumps({"event": "tier_replicas", "without_replicas": sorted(down)}))
            self._no_replicas = down
        except Exception as exc:  # the controller may be restarting; keep the last view
            log.warning("could not read Serve status: %r", exc)

    def _unavailable(self) -> frozenset[str]:
        now = time.monotonic()
        cooling = {t for t, until in self._unhealthy_until.items() if until > now}
        return frozenset(cooling | self._no_replicas | self._suspended)

    async def route(self, req: RouteRequest) -> RouteDecision:
        start_ns = now_ns()
        decision = await self._pipeline.decide(req, self._unavailable())
        if self._tracing.on:
            decision_span(self._tracing, req.traceparent, decision, start_ns)
        self._metrics.decisions.inc(tags={"tier": decision.tier, "reason": reason_kind(decision.reason)})
        self._metrics.decision_latency.observe(decision.decision_ms / 1000)
        if decision.affinity_hit:
            self._metrics.affinity_hits.inc(tags={"tier": decision.tier})
        log.info(json.dumps({"event": "route", "request_id": req.request_id, **decision.model_dump()}))
        self._traffic.observe(req, decision)  # shadow score and the decision's record, off the path
        return decision

    async def report_failure(self, tier: str, cause: str) -> None:
        """Passive health: a tier that failed before its first token is skipped for a while."""
        self._unhealthy_until[tier] = time.monotonic() + self._cooldown_s
        log.warning(json.dumps({"event": "tier_failure", "tier": tier, "cause": cause,
                                "cooldown_s": self._cooldown_s}))

    async def set_suspended(self, tier: str, suspended: bool) -> list[str]:
        """An operator suspends (or resumes) a tier: `auto` requests are routed as if it had no
        replica; requests that name the tier still reach it. Per router replica."""
        if tier not in {t.name for t in self._config.tiers}:
            raise ValueError(f"unknown tier {tier!r}")
        (self._suspended.add if suspended else self._suspended.discard)(tier)
        log.warning(json.dumps({"event": "tier_suspended" if suspended else "tier_resumed", "tier": tier}))
        return sorted(self._suspended)

    async def tiers_seen_down(self) -> list[str]:
        """Tiers this router's replica view has without a running replica. Readiness waits
        for it to be empty, so the first requests after a deploy are not routed on a view
        polled while the tiers were still starting (it also warms the ingress's handle).
        A view with tiers down is read afresh: a deploy is ready when its last tier is,
        not up to `health_poll_s` later."""
        if self._no_replicas:
            await self._read_replicas()
        return sorted(self._no_replicas)

    async def suspended(self) -> list[str]:
        return sorted(self._suspended)

    async def routing_view(self) -> dict[str, Any]:
        """The ladder and thresholds this replica's picker uses now, for the console: after a
        live reconfigure, or from a picker that moves its thresholds, they differ from the
        ingress's copy of the config."""
        picker = self._pipeline.picker
        return {"ladder": list(self._config.routing.ladder),
                "thresholds": list(getattr(picker.plugin, "thresholds", ())),
                "picker": picker.name, "scorer_version": self._pipeline.scorer_version}
