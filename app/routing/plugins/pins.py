"""Pins: a tier chosen before any scoring, by the client or by a rule."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from app.routing.plugin import Context, NoParams, Pin, PinPlugin, Setup
from app.routing.rules import RuleSet


class ModelPin(PinPlugin):
    """`model` names a tier (by tier or served model name): that tier, nothing else."""

    skips_scoring = True

    def pin(self, ctx: Context) -> Pin | None:
        tier = self.setup.config.tier_for_model(ctx.request.model)
        return Pin(tier.name, "model") if tier is not None else None


class HeaderPin(PinPlugin):
    """`x-tierserve-tier` names a tier, when `routing.allow_tier_header` lets clients choose."""

    skips_scoring = True

    def pin(self, ctx: Context) -> Pin | None:
        header = ctx.request.tier_header
        if not header or not self.setup.config.routing.allow_tier_header:
            return None
        tier = self.setup.config.tier_for_model(header)
        return Pin(tier.name, "header") if tier is not None else None


class EffortParams(NoParams):
    tiers: dict[Literal["minimal", "low", "medium", "high"], str] = Field(default_factory=dict)


class ReasoningEffortPin(PinPlugin):
    """OpenAI's `reasoning_effort` picks a tier through `params.tiers` (effort -> tier)."""

    Params = EffortParams
    skips_scoring = True

    def __init__(self, setup: Setup) -> None:
        super().__init__(setup)
        assert isinstance(setup.params, EffortParams)
        names = {t.name for t in setup.config.tiers}
        if unknown := sorted(set(setup.params.tiers.values()) - names):
            raise ValueError(f"reasoning-effort names unknown tier(s) {unknown}; tiers are {sorted(names)}")
        self._tiers: dict[str, str] = {str(effort): tier for effort, tier in setup.params.tiers.items()}

    def pin(self, ctx: Context) -> Pin | None:
        effort = ctx.request.reasoning_effort
        tier = self._tiers.get(effort) if effort else None
        return Pin(tier, f"effort:{effort}") if tier else None


class RulesPin(PinPlugin):
    """`routing.rules`: a forced rule pins hard; otherwise the first match pins softly
    (session affinity and fallback still apply). Scoring still runs, for the record."""

    def __init__(self, setup: Setup) -> None:
        super().__init__(setup)
        self._rules = RuleSet(setup.config.routing.rules)

    def pin(self, ctx: Context) -> Pin | None:
        matched = self._rules.matching(ctx.features)
        if not matched:
            return None
        names = tuple(r.name for r in matched)
        forced = next((r for r in matched if r.rule.force), None)
        rule = forced or matched[0]
        return Pin(rule.tier, f"rule:{rule.name}", hard=forced is not None, matched=names)
