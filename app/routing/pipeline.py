"""The tier router: overrides -> rules -> learned score -> default, then affinity and filters.

Same request and same state give the same decision; every decision says why.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from app.config.schema import TierserveConfig
from app.protocol.internal import RouteDecision, RouteRequest
from app.routing.affinity import AffinityStore
from app.routing.features import RequestFeatures
from app.routing.rules import RuleSet
from app.routing.scorer import ComplexityScorer


@dataclass(frozen=True)
class _Choice:
    tier: str
    reason: str
    pinned: bool = False  # chosen by the client or a forced rule: affinity and fallback don't apply
    score: float | None = None
    matched: tuple[str, ...] = ()


class TierRouter:
    def __init__(self, config: TierserveConfig, scorer: ComplexityScorer | None = None,
                 store: AffinityStore | None = None) -> None:
        self._config = config
        self._routing = config.routing
        self._rules = RuleSet(config.routing.rules)
        self._scorer = scorer
        self._store = store
        # Tier order is strength order: later tiers are stronger.
        self._rank = {t.name: i for i, t in enumerate(config.tiers)}

    def _choose(self, req: RouteRequest, f: RequestFeatures) -> _Choice:
        by_model = self._config.tier_for_model(req.model)
        if by_model is not None:
            return _Choice(by_model.name, "model", pinned=True)
        if req.tier_header and self._routing.allow_tier_header:
            named = self._config.tier_for_model(req.tier_header)
            if named is not None:
                return _Choice(named.name, "header", pinned=True)
        matched = self._rules.matching(f)
        names = tuple(r.name for r in matched)
        score = self._scorer.score(f) if self._scorer is not None else None
        for rule in matched:
            if rule.rule.force:
                return _Choice(rule.tier, f"rule:{rule.name}", True, score, names)
        if matched:
            return _Choice(matched[0].tier, f"rule:{matched[0].name}", False, score, names)
        if score is not None:
            strong = score >= self._routing.threshold
            tier = self._routing.strong_tier if strong else self._routing.weak_tier
            return _Choice(tier, "score", False, score, names)
        return _Choice(self._routing.default_tier, "default", False, score, names)

    def _fits(self, tier: str, f: RequestFeatures) -> bool:
        return f.prompt_tokens + (f.max_tokens or 1) <= self._config.tier(tier).max_model_len

    async def decide(self, req: RouteRequest,
                     unavailable: frozenset[str] = frozenset()) -> RouteDecision:
        start = time.perf_counter()
        f = RequestFeatures.of(req)
        choice = self._choose(req, f)
        tier, reason, affinity_hit = choice.tier, choice.reason, False

        session = req.session_id if self._store is not None and self._routing.affinity.enabled else None
        if session and not choice.pinned:
            previous = await self._store.get(session)
            # A conversation never moves to a weaker tier: its context lives on the stronger one.
            if previous in self._rank and self._rank[previous] >= self._rank[tier]:
                affinity_hit = True
                if previous != tier:
                    tier, reason = previous, "affinity"

        fallback_ok = self._routing.fallback.enabled and not choice.pinned
        others = sorted((t for t in self._rank if t != tier and t not in unavailable),
                        key=lambda t: -self._rank[t])
        if fallback_ok and others:
            if tier in unavailable:
                tier, reason = others[0], "fallback:unhealthy"
            elif not self._fits(tier, f):
                fitting = [t for t in others if self._fits(t, f)]
                if fitting:
                    tier, reason = fitting[0], "fallback:context"
        fallbacks = [t for t in others if t != tier] if fallback_ok else []
        fallbacks = fallbacks[: self._routing.fallback.max_attempts - 1]

        if session:
            await self._store.put(session, tier)
        return RouteDecision(
            tier=tier, reason=reason, score=choice.score, threshold=self._routing.threshold,
            matched_rules=list(choice.matched), features=f.summary(), affinity_hit=affinity_hit,
            fallbacks=fallbacks, decision_ms=(time.perf_counter() - start) * 1000,
        )
