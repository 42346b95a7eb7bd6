"""What the A/B TTFT scripts in benchmarks/ share (key_overhead.py, tracing_overhead.py): their
two knobs and one pass of sequential streams (concurrency 1) reduced to its p50s."""

from __future__ import annotations

import argparse
import asyncio
import statistics

from loadtests.bench.stream_client import run_pass


def pass_args(doc: str | None) -> argparse.Namespace:
    """--passes and --requests (per pass), with the script's docstring as its help."""
    parser = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--passes", type=int, default=3)
    parser.add_argument("--requests", type=int, default=32)
    return parser.parse_args()


def sequential_p50s(url: str, body: dict, requests: int, *, min_ok: int,
                    headers: dict[str, str] | None = None) -> tuple[float, float, list[int]]:
    """TTFT p50 and end-to-end p50 (ms) of the streams that succeeded among `requests` sent one
    after another, and the HTTP status of each that failed; raises if fewer than `min_ok` succeeded."""
    timings, _ = asyncio.run(run_pass(url, body, 1, requests, headers=headers))
    ok = [t for t in timings if t.ok]
    failed = [t.status for t in timings if not t.ok]
    if len(ok) < min_ok:
        raise RuntimeError(f"{len(failed)} of {len(timings)} requests failed: HTTP {failed}")
    return (statistics.median(t.ttft_s for t in ok) * 1000,
            statistics.median(t.total_s for t in ok) * 1000, failed)
