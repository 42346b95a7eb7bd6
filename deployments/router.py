"""The router deployment: one decision per request, logged as one JSON line."""

from __future__ import annotations

import json
import logging
import time

from app.config.loader import REPO_ROOT
from app.config.schema import TierserveConfig
from app.protocol.internal import RouteDecision, RouteRequest
from app.routing.affinity import make_store
from app.routing.pipeline import TierRouter
from app.routing.scorer import ComplexityScorer
from deployments.metrics import RouterMetrics, reason_kind

log = logging.getLogger("tierserve.routing")


def load_scorer(config: TierserveConfig) -> ComplexityScorer | None:
    learned = config.routing.learned
    if not learned.enabled:
        return None
    from app.routing.learned import LearnedScorer

    return LearnedScorer.load(REPO_ROOT / learned.artifact)


class Router:
    def __init__(self, config: TierserveConfig) -> None:
        aff = config.routing.affinity
        store = make_store(aff.store_url, aff.ttl_s, aff.max_sessions) if aff.enabled else None
        self._router = TierRouter(config, load_scorer(config), store)
        self._cooldown_s = max(1.0, config.routing.fallback.backoff_ms / 1000 * 20)
        self._unhealthy_until: dict[str, float] = {}
        self._metrics = RouterMetrics()

    def _unavailable(self) -> frozenset[str]:
        now = time.monotonic()
        return frozenset(t for t, until in self._unhealthy_until.items() if until > now)

    async def route(self, req: RouteRequest) -> RouteDecision:
        decision = await self._router.decide(req, self._unavailable())
        self._metrics.decisions.inc(tags={"tier": decision.tier, "reason": reason_kind(decision.reason)})
        self._metrics.decision_latency.observe(decision.decision_ms / 1000)
        if decision.affinity_hit:
            self._metrics.affinity_hits.inc(tags={"tier": decision.tier})
        log.info(json.dumps({"event": "route", "request_id": req.request_id,
                             **decision.model_dump(exclude={"fallbacks"}),
                             "fallbacks": decision.fallbacks}))
        return decision

    async def report_failure(self, tier: str, cause: str) -> None:
        """Passive health: a tier that failed before its first token is skipped for a while."""
        self._unhealthy_until[tier] = time.monotonic() + self._cooldown_s
        log.warning(json.dumps({"event": "tier_failure", "tier": tier, "cause": cause,
                                "cooldown_s": self._cooldown_s}))
