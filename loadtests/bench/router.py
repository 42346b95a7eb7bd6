"""`tierserve bench router`: decision latency of the routing pipeline, in process.

Runs `RoutePipeline.decide` as the router deployment calls it (every plugin: rules,
scorer, affinity store, filters) for a short prompt and a ~4k-token prompt, and reads
the pipeline's own timer (`decision_ms`), the one the router's metric records.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from app.config.loader import REPO_ROOT, load_config
from app.protocol.internal import RouteRequest
from app.routing.assemble import build_pipeline
from app.routing.pipeline import RoutePipeline
from app.routing.scorer import load_scorer
from loadtests.bench.stats import percentile

PROMPTS = {
    "short": "What is the capital of France?",
    # ~4k tokens by the router's estimate; words, so regexes scan real text.
    "4k": " ".join(["the quick brown fox jumps over the lazy dog"] * 420),
}


def build_router(profile: str, artifact: str | None = None) -> RoutePipeline:
    scorer = load_scorer(REPO_ROOT / artifact) if artifact else None
    return build_pipeline(load_config(profile), scorer=scorer)


async def _time_decisions(pipeline: RoutePipeline, text: str, n: int,
                          session: bool) -> tuple[list[float], list[float]]:
    """Microseconds per decision: the pipeline's own wall-clock timer, and this thread's CPU
    time (what one core spends; honest on a machine busy with other work)."""
    wall, cpu = [], []
    for i in range(n):
        req = RouteRequest(request_id=f"b{i}", endpoint="chat", model="auto", prompt_text=text,
                           session_id=f"s{i % 64}" if session else None)
        start_cpu = time.thread_time()
        wall.append((await pipeline.decide(req)).decision_ms * 1000)
        cpu.append((time.thread_time() - start_cpu) * 1e6)
    return wall, cpu


def run_router_bench(profile: str, n: int = 2000, artifact: str | None = None) -> dict[str, Any]:
    pipeline = build_router(profile, artifact)
    results: dict[str, Any] = {}
    for label, text in PROMPTS.items():
        for session in (False, True):
            asyncio.run(_time_decisions(pipeline, text, min(n, 100), session))  # warm caches
            us, cpu = asyncio.run(_time_decisions(pipeline, text, n, session))
            key = f"{label}{'+session' if session else ''}"
            results[key] = {"n": n, "p50_us": percentile(us, 50), "p99_us": percentile(us, 99),
                            "cpu_p50_us": percentile(cpu, 50), "cpu_p99_us": percentile(cpu, 99),
                            "prompt_chars": len(text)}
    return results


def router_markdown(results: dict[str, Any]) -> str:
    lines = ["| prompt | decisions | p50 | p99 | CPU p50 | CPU p99 |", "|---|---|---|---|---|---|"]
    for key, r in results.items():
        lines.append(f"| {key} ({r['prompt_chars']} chars) | {r['n']} | {r['p50_us']:.0f} µs "
                     f"| {r['p99_us']:.0f} µs | {r['cpu_p50_us']:.0f} µs | {r['cpu_p99_us']:.0f} µs |")
    return "\n".join(lines) + "\n"
