"""The routing pipeline: pins -> scorers -> picker -> filters -> plan, each a plugin.

Same request and same state give the same decision; every decision says why, plugin by
plugin, with each one's time. Built from config by `app.routing.assemble.build_pipeline`.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from app.config.schema import TierserveConfig
from app.protocol.internal import PluginContribution, RouteDecision, RouteRequest
from app.routing.features import RequestFeatures
from app.routing.plugin import Context, FilterPlugin, PickerPlugin, Pin, PinPlugin, PlanPlugin, ScorerPlugin


@dataclass(frozen=True)
class Named:
    """A plugin instance with the name config gave it (and a scorer's weight)."""

    name: str
    plugin: object
    weight: float = 1.0


def _ms(start: float) -> float:
    return (time.perf_counter() - start) * 1000


class RoutePipeline:
    def __init__(self, config: TierserveConfig, pins: list[Named], scorers: list[Named],
                 picker: Named, filters: list[Named], plan: Named) -> None:
        self.config = config
        self.pins = pins
        self.scorers = scorers
        self.picker = picker
        self.filters = filters
        self.plan = plan
        self._order = config.by_cost()  # strength order: later is stronger
        self._rank = {t: i for i, t in enumerate(self._order)}
        versions = [getattr(s.plugin, "version", None) for s in scorers]
        self.scorer_version = ",".join(v for v in versions if v) or None

    def _pin(self, ctx: Context, out: list[PluginContribution]) -> tuple[Pin | None, bool]:
        """The first pin that fires, and whether it leaves nothing to score."""
        for named in self.pins:
            assert isinstance(named.plugin, PinPlugin)
            start = time.perf_counter()
            pin = named.plugin.pin(ctx)
            outcome = f"{pin.tier} ({pin.reason}{'' if pin.hard else ', soft'})" if pin else "none"
            out.append(PluginContribution(plugin=named.name, kind="pin", outcome=outcome, ms=_ms(start)))
            if pin is not None:
                return pin, named.plugin.skips_scoring
        return None, False

    def _score(self, ctx: Context, out: list[PluginContribution]) -> float | None:
        """Weighted mean of the scorers that did not abstain, each clamped to [0, 1]."""
        total = weights = 0.0
        for named in self.scorers:
            assert isinstance(named.plugin, ScorerPlugin)
            start = time.perf_counter()
            value = named.plugin.score(ctx)
            if value is not None:
                value = min(1.0, max(0.0, float(value)))
                total += named.weight * value
                weights += named.weight
            out.append(PluginContribution(
                plugin=named.name, kind="scorer", outcome="abstain" if value is None else f"{value:.4f}",
                value=value, weight=named.weight, ms=_ms(start)))
        return total / weights if weights else None

    def _nearest(self, tier: str, kept: list[str]) -> str:
        """The cheapest kept tier at least as strong as `tier`, else the strongest kept one."""
        above = [t for t in kept if self._rank[t] >= self._rank[tier]]
        if above:
            return min(above, key=self._rank.__getitem__)
        return max(kept, key=self._rank.__getitem__)

    async def decide(self, req: RouteRequest,
                     unavailable: frozenset[str] = frozenset()) -> RouteDecision:
        start = time.perf_counter()
        out: list[PluginContribution] = []
        features = RequestFeatures.of(req)
        out.append(PluginContribution(plugin="features", kind="features",
                                      outcome=f"{features.prompt_tokens} tokens", ms=_ms(start)))
        ctx = Context(req, features, unavailable)
        thresholds = list(getattr(self.picker.plugin, "thresholds", ()))  # before `observe` moves them

        pin, skip_scoring = self._pin(ctx, out)
        score = None if skip_scoring else self._score(ctx, out)
        if pin is not None:
            tier, reason = pin.tier, pin.reason
        elif score is not None:
            assert isinstance(self.picker.plugin, PickerPlugin)
            t0 = time.perf_counter()
            tier, reason = self.picker.plugin.pick(ctx, score), "score"
            key = self.picker.plugin.key(score, features.prompt_tokens)
            used = ",".join(f"{t:.4g}" for t in thresholds)
            out.append(PluginContribution(plugin=self.picker.name, kind="picker",
                                          outcome=f"{tier} (key {key:.4g}; thresholds {used})",
                                          ms=_ms(t0)))
        else:
            tier, reason = self.config.routing.default_tier, "default"

        fallbacks: list[str] = []
        if pin is None or not pin.hard:
            candidates = list(self._order)
            for named in self.filters:
                assert isinstance(named.plugin, FilterPlugin)
                t0 = time.perf_counter()
                kept = await named.plugin.keep(ctx, tier, candidates)
                outcome = "kept all"
                if not kept:  # a filter that would leave nothing is ignored
                    outcome = f"ignored (would drop all of {candidates})"
                else:
                    if dropped := [t for t in candidates if t not in kept]:
                        outcome = f"dropped {','.join(dropped)}"
                    if tier not in kept:
                        tier, reason = self._nearest(tier, kept), named.plugin.moved_reason
                        outcome += f" -> {tier}"
                    candidates = kept
                out.append(PluginContribution(plugin=named.name, kind="filter", outcome=outcome, ms=_ms(t0)))
            assert isinstance(self.plan.plugin, PlanPlugin)
            t0 = time.perf_counter()
            fallbacks = self.plan.plugin.fallbacks(ctx, tier)
            out.append(PluginContribution(plugin=self.plan.name, kind="plan",
                                          outcome=",".join(fallbacks) or "none", ms=_ms(t0)))
            assert isinstance(self.picker.plugin, PickerPlugin)
            self.picker.plugin.observe(ctx, tier, score if pin is None else None)
        for named in self.filters:
            assert isinstance(named.plugin, FilterPlugin)
            await named.plugin.chosen(ctx, tier)

        return RouteDecision(
            tier=tier, reason=reason, score=score,
            threshold=thresholds[0] if len(thresholds) == 1 else None, thresholds=thresholds,
            matched_rules=list(pin.matched) if pin else [], features=features.summary(),
            affinity_hit=ctx.affinity_hit, fallbacks=fallbacks, contributions=out,
            scorer_version=self.scorer_version if score is not None else None,
            decision_ms=_ms(start),
        )
