"""Window arithmetic for per-key limits, shared by the in-process and Redis counters.

A limit per window (e.g. tokens per minute) is kept as a sliding window of
`BUCKETS` equal buckets: a take is admitted iff what the last `BUCKETS` buckets
hold plus its cost fits the limit. A key at its limit is never locked longer
than one window: every bucket expires `window` after it was filled.
"""

from __future__ import annotations

import calendar
import math
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Literal

BUCKETS = 60
Period = Literal["day", "month"]


@dataclass(frozen=True)
class WindowResult:
    admitted: bool
    used: int         # in the window, after this take
    limit: int
    retry_ms: int     # until a take of this cost would fit (0 when admitted)
    reset_ms: int     # until the window holds nothing of what it holds now
    bucket: int       # the bucket this take was counted in (for reconciling)

    @property
    def remaining(self) -> int:
        return max(0, self.limit - self.used)


def bucket_ms(window_ms: int) -> int:
    return max(1, window_ms // BUCKETS)


def evaluate(counts: dict[int, int], now_ms: int, window_ms: int, limit: int,
             cost: int) -> tuple[WindowResult, dict[int, int]]:
    """Pure: one take against `counts` (bucket -> amount). Returns the result and the new counts."""
    b = bucket_ms(window_ms)
    cur = now_ms // b
    span = window_ms // b
    live = {k: v for k, v in counts.items() if k > cur - span}
    used = sum(live.values())
    admitted = used + cost <= limit
    if admitted:
        live[cur] = live.get(cur, 0) + cost
        used += cost
    retry = 0 if admitted else _expiry_ms(live, used + cost - limit, now_ms, b, span, window_ms)
    reset = _expiry_ms(live, used, now_ms, b, span, window_ms) if used > 0 else 0
    return WindowResult(admitted, used, limit, retry, reset, cur), live


def _expiry_ms(live: dict[int, int], need: int, now_ms: int, b: int, span: int, window_ms: int) -> int:
    """Milliseconds until the oldest buckets holding at least `need` have expired."""
    freed = 0
    for k in sorted(live):
        freed += live[k]
        if freed >= need:
            return max(1, (k + span) * b - now_ms)
    return window_ms  # more than the window ever holds: this cost can never fit


def retry_after_s(ms: int) -> int:
    return max(1, math.ceil(ms / 1000))


def duration(ms: int) -> str:
    """OpenAI's reset format: '20ms', '1.5s', '6m0s'."""
    if ms < 1000:
        return f"{ms}ms"
    s = ms / 1000
    if s < 60:
        return f"{s:.3g}s"
    return f"{int(s // 60)}m{int(s % 60)}s"


def period_start(now_s: float, period: Period) -> int:
    """UTC start (epoch seconds) of the budget period containing `now_s`."""
    t = datetime.fromtimestamp(now_s, UTC)
    start = t.replace(hour=0, minute=0, second=0, microsecond=0)
    if period == "month":
        start = start.replace(day=1)
    return int(start.timestamp())


def period_end(start_s: int, period: Period) -> int:
    t = datetime.fromtimestamp(start_s, UTC)
    if period == "day":
        return start_s + 86_400
    days = calendar.monthrange(t.year, t.month)[1]
    return start_s + days * 86_400
