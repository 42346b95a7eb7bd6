"""Window arithmetic of per-key limits (pure functions, no clock)."""

from __future__ import annotations

from datetime import UTC, datetime

from app.keys.windows import BUCKETS, duration, evaluate, period_end, period_start, retry_after_s

W = 60_000  # one minute, 1 s buckets


def run(takes: list[tuple[int, int]], limit: int) -> list:
    counts: dict[int, int] = {}
    out = []
    for now, cost in takes:
        r, counts = evaluate(counts, now, W, limit, cost)
        out.append(r)
    return out


def test_admits_up_to_the_limit_exactly():
    rs = run([(i * 100, 10) for i in range(12)], limit=100)
    assert [r.admitted for r in rs] == [True] * 10 + [False] * 2
    assert rs[9].used == 100 and rs[9].remaining == 0


def test_refusal_is_never_longer_than_the_window():
    rs = run([(0, 100), (30_000, 1)], limit=100)
    assert not rs[1].admitted
    # the take at t=0 leaves the window at t=60 s: 30 s from the refused take
    assert rs[1].retry_ms == 30_000 and retry_after_s(rs[1].retry_ms) == 30
    r, _ = evaluate({0: 100}, 60_000, W, 100, 1)
    assert r.admitted  # exactly one window later, free again


def test_sliding_not_fixed_window():
    # 60 at t=50 s, 40 at t=59 s; at t=61 s the first is still inside the last minute
    rs = run([(50_000, 60), (59_000, 40), (61_000, 10), (110_000, 10)], limit=100)
    assert [r.admitted for r in rs] == [True, True, False, True]
    assert rs[2].retry_ms == 110_000 - 61_000  # when the 60 from t=50 s leaves


def test_retry_counts_only_what_must_expire():
    # 30@0, 30@10s, 30@20s, limit 100: a take of 40 needs 30 freed -> the bucket of t=0
    r, _ = evaluate({0: 30, 10: 30, 20: 30}, 25_000, W, 100, 40)
    assert not r.admitted and r.retry_ms == 60_000 - 25_000
    # a take of 70 needs 60 freed: t=0 and t=10 s
    r, _ = evaluate({0: 30, 10: 30, 20: 30}, 25_000, W, 100, 70)
    assert r.retry_ms == 70_000 - 25_000
    assert r.reset_ms == 80_000 - 25_000  # everything gone when t=20 s leaves


def test_cost_above_limit_can_never_fit():
    r, _ = evaluate({}, 0, W, 100, 101)
    assert not r.admitted and r.retry_ms == W


def test_zero_cost_is_a_peek():
    r, counts = evaluate({5: 40}, 6_000, W, 100, 0)
    assert r.admitted and r.used == 40 and counts == {5: 40, 6: 0}


def test_old_buckets_are_dropped():
    _, counts = evaluate({0: 1, 59: 1, 60: 1}, 60_000, W, 100, 0)
    assert 0 not in counts and set(counts) == {59, 60}
    assert BUCKETS == 60


def test_duration_format():
    assert [duration(x) for x in (0, 20, 1500, 59_000, 360_000, 61_500)] == \
        ["0ms", "20ms", "1.5s", "59s", "6m0s", "1m1s"]


def test_budget_periods_are_utc_calendar():
    t = datetime(2025, 2, 14, 15, 30, tzinfo=UTC).timestamp()
    day = period_start(t, "day")
    assert datetime.fromtimestamp(day, UTC) == datetime(2025, 2, 14, tzinfo=UTC)
    month = period_start(t, "month")
    assert datetime.fromtimestamp(month, UTC) == datetime(2025, 2, 1, tzinfo=UTC)
    assert period_end(month, "month") - month == 28 * 86_400
    assert period_end(day, "day") - day == 86_400
