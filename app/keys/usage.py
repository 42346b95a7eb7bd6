"""Usage events: batched to the database off the request path; reports with savings."""

from __future__ import annotations

import logging
from collections import defaultdict

from app.batching import BatchWriter
from app.keys.models import TeamTotal, UsageEvent, UsageLine, UsageReport
from app.keys.store import KeyStore

log = logging.getLogger("ray.serve.tierserve.keys")


class UsageRecorder(BatchWriter[UsageEvent]):
    """Collects events in memory; a background task writes them every `flush_s` in one insert."""

    MAX_PENDING = 100_000  # beyond this (database down for long) the oldest are dropped

    def __init__(self, store: KeyStore, flush_s: float, batch_max: int) -> None:
        super().__init__(store.record_usage, interval_s=flush_s, batch_max=batch_max,
                         max_pending=self.MAX_PENDING, what="usage", log=log)


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
