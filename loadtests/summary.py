"""Turn request records into summary.json figures: RPS, percentiles, errors, tier mix."""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Sequence
from typing import Any

from loadtests.bench.stats import percentile
from loadtests.records import RequestRecord


def _pcts(values: Sequence[float]) -> dict[str, float | None]:
    return {f"p{q}": percentile(values, q) for q in (50, 95, 99)}


def summarize(records: Sequence[RequestRecord], duration_s: float | None = None) -> dict[str, Any]:
    """Figures over all requests; `duration_s` defaults to the span the records cover."""
    if not records:
        return {"requests": 0, "ok": 0, "rps": 0.0, "errors_by_status": {}, "rate_limited": 0,
                "clients": 0, "tier_mix": {},
                "latency_ms": _pcts([]), "ttft_ms": _pcts([]), "by_concurrency": {}}
    ok = [r for r in records if r.ok]
    if duration_s is None:
        start = min(r.t for r in records)
        end = max(r.t + r.latency_ms / 1000 for r in records)
        duration_s = max(end - start, 1e-9)
    tiers = Counter(r.tier or "none" for r in ok)
    tokens = sum(r.tokens for r in ok)
    return {
        "requests": len(records),
        "ok": len(ok),
        "duration_s": duration_s,
        "rps": len(ok) / duration_s,
        "tokens_per_s": tokens / duration_s,
        "latency_ms": _pcts([r.latency_ms for r in ok]),
        "ttft_ms": _pcts([r.ttft_ms for r in ok if r.ttft_ms is not None]),
        "errors_by_status": {str(k): v for k, v in
                             sorted(Counter(r.status for r in records if not r.ok).items())},
        # 429s: refused by a rate limit (with Retry-After), apart from the other errors.
        "rate_limited": sum(r.status == 429 for r in records),
        "clients": len({r.client for r in records if r.client is not None}) or 1,
        "tier_mix": {t: {"requests": n, "share": n / len(ok)} for t, n in sorted(tiers.items())},
        "hard_prompts_on_reasoning": _routing_agreement(ok),
        "by_concurrency": by_concurrency(records),
    }


def _routing_agreement(ok: Sequence[RequestRecord]) -> float | None:
    hard = [r for r in ok if r.kind == "hard"]
    return sum(r.tier == "reasoning" for r in hard) / len(hard) if hard else None


def by_concurrency(records: Sequence[RequestRecord]) -> dict[str, dict[str, Any]]:
    """Latency and TTFT percentiles grouped by the user count at request start."""
    groups: dict[int, list[RequestRecord]] = defaultdict(list)
    for r in records:
        groups[r.users].append(r)
    out = {}
    for users in sorted(groups):
        group = groups[users]
        ok = [r for r in group if r.ok]
        span = max(r.t + r.latency_ms / 1000 for r in group) - min(r.t for r in group)
        out[str(users)] = {
            "requests": len(group), "errors": len(group) - len(ok),
            "rate_limited": sum(r.status == 429 for r in group),
            "rps": len(ok) / span if span > 0 else None,
            "latency_ms": _pcts([r.latency_ms for r in ok]),
            "ttft_ms": _pcts([r.ttft_ms for r in ok if r.ttft_ms is not None]),
        }
    return out


def tier_timeline(records: Sequence[RequestRecord], bin_s: float = 5.0) -> dict[str, list[int]]:
    """Requests per tier in consecutive `bin_s` windows from the first request."""
    if not records:
        return {"t": []}
    start = min(r.t for r in records)
    bins = int((max(r.t for r in records) - start) // bin_s) + 1
    tiers = sorted({r.tier or "none" for r in records if r.ok})
    table: dict[str, list[int]] = {t: [0] * bins for t in tiers}
    for r in records:
        if r.ok:
            table[r.tier or "none"][min(int((r.t - start) // bin_s), bins - 1)] += 1
    return {"t": [i * bin_s for i in range(bins)], **table}
