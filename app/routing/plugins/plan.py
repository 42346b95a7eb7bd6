"""The fallback plan: which tiers to try, in order, if the chosen one fails before its
first token (deployments/dispatch.py walks it)."""

from __future__ import annotations

from app.routing.plugin import Context, PlanPlugin, Setup


class FallbackPlan(PlanPlugin):
    """The tiers other than the chosen one: dearer ones nearest first (an answer at least as
    good), then cheaper ones nearest first, unhealthy ones last; `fallback.max_attempts` in all.

    Health is a polled hint that can be stale (right after a deploy every tier reads as down),
    so an unhealthy tier moves to the back of the plan, never out of it: a stream whose replica
    dies must still have somewhere to migrate to."""

    def __init__(self, setup: Setup) -> None:
        super().__init__(setup)
        self._order = setup.config.by_cost()
        fallback = setup.config.routing.fallback
        self._room = fallback.max_attempts - 1 if fallback.enabled else 0

    def fallbacks(self, ctx: Context, tier: str) -> list[str]:
        i = self._order.index(tier)
        ladder = self._order[i + 1:] + self._order[:i][::-1]
        ladder.sort(key=lambda t: t in ctx.unavailable)  # stable: ladder order otherwise
        return ladder[: self._room]
