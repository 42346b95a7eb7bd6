"""The fallback plan: which tiers to try, in order, if the chosen one fails before its
first token (deployments/dispatch.py walks it)."""

from __future__ import annotations

from app.routing.plugin import Context, PlanPlugin, Setup


class FallbackPlan(PlanPlugin):
    """Healthy tiers other than the chosen one: dearer ones nearest first (an answer at
    least as good), then cheaper ones nearest first; `fallback.max_attempts` in all."""

    def __init__(self, setup: Setup) -> None:
        super().__init__(setup)
        self._order = setup.config.by_cost()
        fallback = setup.config.routing.fallback
        self._room = fallback.max_attempts - 1 if fallback.enabled else 0

    def fallbacks(self, ctx: Context, tier: str) -> list[str]:
        i = self._order.index(tier)
        ladder = self._order[i + 1:] + self._order[:i][::-1]
        return [t for t in ladder if t not in ctx.unavailable][: self._room]
