"""Filters: drop the tiers that cannot or should not serve this request."""

from __future__ import annotations

from app.routing.plugin import Context, FilterPlugin, Setup


class HealthFilter(FilterPlugin):
    """Drops tiers the router saw as down (no running replica, recent failure, suspended)."""

    moved_reason = "fallback:unhealthy"

    async def keep(self, ctx: Context, tier: str, candidates: list[str]) -> list[str]:
        return [t for t in candidates if t not in ctx.unavailable]


class ContextFitFilter(FilterPlugin):
    """Drops tiers whose context window cannot hold the prompt plus its max_tokens."""

    moved_reason = "fallback:context"

    def __init__(self, setup: Setup) -> None:
        super().__init__(setup)
        self._max_len = {t.name: t.max_model_len for t in setup.config.tiers}

    async def keep(self, ctx: Context, tier: str, candidates: list[str]) -> list[str]:
        need = ctx.features.prompt_tokens + (ctx.features.max_tokens or 1)
        return [t for t in candidates if need <= self._max_len[t]]


class AffinityFilter(FilterPlugin):
    """A conversation never moves to a cheaper tier than it had: its context lives there.
    Drops the tiers below the session's last one; remembers every session's final tier."""

    moved_reason = "affinity"

    def __init__(self, setup: Setup) -> None:
        super().__init__(setup)
        self._store = setup.store
        self._rank = {t: i for i, t in enumerate(setup.config.by_cost())}

    async def keep(self, ctx: Context, tier: str, candidates: list[str]) -> list[str]:
        session = ctx.request.session_id
        if self._store is None or not session:
            return candidates
        previous = await self._store.get(session)
        if previous is None or previous not in self._rank:
            return candidates
        floor = self._rank[previous]
        ctx.affinity_hit = floor >= self._rank[tier]
        return [t for t in candidates if self._rank[t] >= floor]

    async def chosen(self, ctx: Context, tier: str) -> None:
        if self._store is not None and ctx.request.session_id:
            await self._store.put(ctx.request.session_id, tier)
