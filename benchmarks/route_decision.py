"""Decision latency of the whole routing pipeline with the learned scorer (prints numbers).

    python benchmarks/route_decision.py [--profile local-cpu] [--iters 2000]

Pin it to one core for the ≤ 2 ms p99 target: `taskset -c 0 python benchmarks/route_decision.py`.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from app.config.loader import load_config  # noqa: E402
from app.protocol.internal import RouteRequest  # noqa: E402
from app.routing.assemble import build_pipeline  # noqa: E402
from app.routing.features import estimate_tokens  # noqa: E402
from app.routing.pipeline import RoutePipeline  # noqa: E402

SHORT = "A store sells pens at $3 each. How many pens can Ann buy with $27?"
PARAGRAPH = ("The plaintiff, a retailer, sued the defendant for breach of a contract signed on "
             "12 March 2019 for 1,250 units at $4.75 each, claiming damages of 37% of the price. "
             "Which of the following is the defendant's strongest argument? ")


def long_prompt(tokens: int) -> str:
    text = PARAGRAPH * (tokens * 4 // len(PARAGRAPH) + 1)
    return text[: tokens * 4] + "\nA. Impossibility\nB. Mistake\nC. Waiver\nD. Duress\nAnswer:"


async def timings(pipeline: RoutePipeline, prompt: str, iters: int) -> tuple[list[float], list[float]]:
    """Wall milliseconds per decision (the pipeline's own timer) and CPU milliseconds (honest
    on a busy machine)."""
    wall, cpu = [], []
    for i in range(iters):
        req = RouteRequest(request_id=f"b{i}", endpoint="chat", model="auto", prompt_text=prompt)
        start_cpu = time.thread_time()
        wall.append((await pipeline.decide(req)).decision_ms)
        cpu.append((time.thread_time() - start_cpu) * 1000)
    return wall, cpu


def _pct(ms: list[float]) -> str:
    ms = sorted(ms)
    return f"p50 {statistics.median(ms):.3f} ms  p99 {ms[min(len(ms) - 1, int(0.99 * len(ms)))]:.3f} ms"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--profile", default="local-cpu")
    ap.add_argument("--iters", type=int, default=2000)
    args = ap.parse_args()
    router = build_pipeline(load_config(args.profile))
    for name, prompt in (("short", SHORT), ("4k-token", long_prompt(4096))):
        asyncio.run(timings(router, prompt, 50))  # warm up
        wall, cpu = asyncio.run(timings(router, prompt, args.iters))
        print(f"{name:9s} tokens~{estimate_tokens(prompt):5d}  wall {_pct(wall)}  |  "
              f"cpu {_pct(cpu)}  (n={len(wall)})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
