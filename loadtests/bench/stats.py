"""Aggregate stream timings into one pass's figures, and passes into a target's."""

from __future__ import annotations

import statistics
from collections.abc import Sequence

from loadtests.bench.stream_client import StreamTiming


def percentile(values: Sequence[float], q: float) -> float | None:
    """Linear-interpolated percentile (q in [0, 100]); None for no values."""
    if not values:
        return None
    data = sorted(values)
    pos = (len(data) - 1) * q / 100
    lo = int(pos)
    hi = min(lo + 1, len(data) - 1)
    return data[lo] + (data[hi] - data[lo]) * (pos - lo)


def pass_figures(timings: list[StreamTiming], wall_s: float) -> dict[str, float | int | None]:
    ok = [t for t in timings if t.ok]
    ttft_ms = [t.ttft_s * 1000 for t in ok]
    itl_ms = [t.itl_s * 1000 for t in ok if t.itl_s is not None]
    tokens = sum(t.tokens for t in ok)
    return {
        "requests": len(timings), "errors": len(timings) - len(ok),
        "ttft_p50_ms": percentile(ttft_ms, 50), "ttft_p99_ms": percentile(ttft_ms, 99),
        "itl_p50_ms": percentile(itl_ms, 50), "itl_p99_ms": percentile(itl_ms, 99),
        "req_per_s": len(ok) / wall_s if wall_s > 0 else 0.0,
        "tok_per_s": tokens / wall_s if wall_s > 0 else 0.0,
    }


def median_of_passes(passes: list[dict]) -> dict[str, float | int | None]:
    """Median of each figure across interleaved passes (errors are summed)."""
    out: dict[str, float | int | None] = {"passes": len(passes)}
    for key in passes[0]:
        vals = [p[key] for p in passes if p[key] is not None]
        if key in ("requests", "errors"):
            out[key] = sum(vals)
        else:
            out[key] = statistics.median(vals) if vals else None
    return out


def ratio(a: float | None, b: float | None) -> float | None:
    return a / b if a is not None and b else None
