"""What OpenTelemetry tracing costs the data path: TTFT at concurrency 1, tracing off vs on.

    .venv/bin/python benchmarks/tracing_overhead.py --passes 3 --requests 32

Starts a private stack with tracing off (no endpoint: no tracer at all) and measures
streaming chat TTFT through `auto` (router hop included, short prompt: the fast tier), then
a second private stack exporting every span over OTLP/HTTP to a receiver on loopback
(tests/otlp_receiver.py; sample ratio 1) and measures again. Median of per-pass p50s. The
two phases run one after the other, so machine drift is in the figure: read small
differences as noise.
"""

from __future__ import annotations

import os
import shutil
import statistics
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from app.config import load_config  # noqa: E402
from loadtests.bench.sequential import pass_args, sequential_p50s  # noqa: E402
from loadtests.bench.stream_client import chat_body  # noqa: E402
from tests.otlp_receiver import OtlpReceiver  # noqa: E402
from tooling.local_cluster import start_private_stack, stop  # noqa: E402

PROMPT = "Say hello to the operators of a tiered inference platform."


FAILED: list[str] = []  # "phase: HTTP status" of each failed stream, printed with the table


def p50_ttft_ms(url: str, requests: int, phase: str = "warm-up") -> tuple[float, float]:
    """TTFT p50 and end-to-end p50 (ms) of `requests` sequential streams (failures listed)."""
    ttft_ms, e2e_ms, failed = sequential_p50s(url, chat_body("auto", PROMPT, 32), requests,
                                              min_ok=requests // 2)
    FAILED.extend(f"{phase}: HTTP {status}" for status in failed)
    return ttft_ms, e2e_ms


def measure(passes: int, requests: int, phase: str) -> list[tuple[float, float]]:
    temp_dir = tempfile.mkdtemp(prefix="tst-bench-", dir="/tmp")
    stack = start_private_stack("local-cpu", temp_dir)
    try:
        url = f"{stack.base_url}/v1/chat/completions"
        p50_ttft_ms(url, 8)  # warm-up
        return [p50_ttft_ms(url, requests, phase) for _ in range(passes)]
    finally:
        stop(stack)
        if keep := os.environ.get("TIERSERVE_BENCH_KEEP_LOGS"):  # to read why a stream failed
            shutil.copytree(Path(temp_dir) / "session_latest" / "logs", Path(keep) / phase,
                            dirs_exist_ok=True)
        shutil.rmtree(temp_dir, ignore_errors=True)


def main() -> int:
    args = pass_args(__doc__)
    env = load_config("local-cpu").server.tracing.endpoint_env
    os.environ.pop(env, None)
    off = measure(args.passes, args.requests, "off")
    receiver = OtlpReceiver()
    os.environ[env] = receiver.url
    try:
        on = measure(args.passes, args.requests, "on")
    finally:
        os.environ.pop(env, None)
        receiver.close()
    rows = [("off (no endpoint)", off), ("on (OTLP/HTTP, every span)", on)]
    print("| tracing | TTFT p50 per pass (ms) | TTFT median (ms) | e2e p50 median (ms) |")
    print("|---|---|---|---|")
    for name, runs in rows:
        print(f"| {name} | {', '.join(f'{t:.1f}' for t, _ in runs)} | "
              f"{statistics.median(t for t, _ in runs):.1f} | {statistics.median(e for _, e in runs):.1f} |")
    delta = statistics.median(t for t, _ in on) - statistics.median(t for t, _ in off)
    print(f"tracing adds {delta:+.1f} ms to TTFT p50 at concurrency 1 (auto, 32 tokens); "
          f"{len(receiver.spans)} spans received in {receiver.requests} exports")
    print(f"failed streams (excluded from the medians): {FAILED or 'none'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
