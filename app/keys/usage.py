"""Usage events: batched to the database off the request path; reports with savings."""

from __future__ import annotations

import asyncio
import logging
from collections import defaultdict

from app.keys.models import TeamTotal, UsageEvent, UsageLine, UsageReport
from app.keys.store import KeyStore

log = logging.getLogger("ray.serve.tierserve.keys")


class UsageRecorder:
    """Collects events in memory; a background task writes them every `flush_s` in one insert."""

    MAX_PENDING = 100_000  # beyond this (database down for long) the oldest are dropped

    def __init__(self, store: KeyStore, flush_s: float, batch_max: int) -> None:
        self._store = store
        self._flush_s = flush_s
        self._batch_max = batch_max
        self._pending: list[UsageEvent] = []
        self._task: asyncio.Task | None = None

    def add(self, event: UsageEvent) -> None:
        self._pending.append(event)
        if len(self._pending) > self.MAX_PENDING:
            del self._pending[: len(self._pending) - self.MAX_PENDING]
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._run())

    async def _run(self) -> None:
        while self._pending:
            await asyncio.sleep(self._flush_s)
            await self.flush()

    async def flush(self) -> None:
        while self._pending:
            batch = self._pending[: self._batch_max]
            try:
                await asyncio.to_thread(self._store.record_usage, batch)
            except Exception as exc:  # keep them; the next flush retries
                log.warning("usage not written yet (%s); will retry", type(exc).__name__)
                return
            del self._pending[: len(batch)]


def build_report(lines: list[UsageLine], strongest_tier: str, since: float | None) -> UsageReport:
    totals: dict[str, list[float]] = defaultdict(lambda: [0, 0, 0.0, 0.0])
    for line in lines:
        t = totals[line.team]
        t[0] += line.requests
        t[1] += line.prompt_tokens + line.completion_tokens
        t[2] += line.cost_usd
        t[3] += line.strongest_cost_usd
    teams = [TeamTotal(team=team, requests=int(r), tokens=int(tok), cost_usd=round(c, 6),
                       strongest_cost_usd=round(s, 6), savings_usd=round(s - c, 6),
                       savings_pct=round(100 * (s - c) / s, 2) if s else 0.0)
             for team, (r, tok, c, s) in sorted(totals.items())]
    return UsageReport(since=since, strongest_tier=strongest_tier, lines=lines, teams=teams)
