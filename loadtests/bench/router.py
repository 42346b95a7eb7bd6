"""`tierserve bench router`: decision latency of the tier router, in process.

Times `TierRouter.decide` as the router deployment calls it (rules, affinity
store, filters), for a short prompt and a ~4k-token prompt.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from app.config.loader import load_config
from app.protocol.internal import RouteRequest
from app.routing.affinity import make_store
from app.routing.pipeline import TierRouter
from loadtests.bench.stats import percentile

PROMPTS = {
    "short": "What is the capital of France?",
    # ~4k tokens by the router's estimate; words, so regexes scan real text.
    "4k": " ".join(["the quick brown fox jumps over the lazy dog"] * 420),
}


def build_router(profile: str, artifact: str | None = None) -> TierRouter:
    config = load_config(profile)
    aff = config.routing.affinity
    store = make_store(aff.store_url, aff.ttl_s, aff.max_sessions) if aff.enabled else None
    scorer = None
    if config.routing.learned.enabled:
        from app.config.loader import REPO_ROOT
        from app.routing.scorer import load_scorer

        scorer = load_scorer(REPO_ROOT / (artifact or config.routing.learned.artifact))
    return TierRouter(config, scorer, store)


async def _time_decisions(router: TierRouter, text: str, n: int, session: bool) -> list[float]:
    out = []
    for i in range(n):
        req = RouteRequest(request_id=f"b{i}", endpoint="chat", model="auto", prompt_text=text,
                           session_id=f"s{i % 64}" if session else None)
        start = time.perf_counter()
        await router.decide(req)
        out.append((time.perf_counter() - start) * 1e6)
    return out


def run_router_bench(profile: str, n: int = 2000, artifact: str | None = None) -> dict[str, Any]:
    router = build_router(profile, artifact)
    results: dict[str, Any] = {}
    for label, text in PROMPTS.items():
        for session in (False, True):
            asyncio.run(_time_decisions(router, text, min(n, 100), session))  # warm caches
            us = asyncio.run(_time_decisions(router, text, n, session))
            key = f"{label}{'+session' if session else ''}"
            results[key] = {"n": n, "p50_us": percentile(us, 50), "p99_us": percentile(us, 99),
                            "prompt_chars": len(text)}
    return results


def router_markdown(results: dict[str, Any]) -> str:
    lines = ["| prompt | decisions | p50 | p99 |", "|---|---|---|---|"]
    for key, r in results.items():
        lines.append(f"| {key} ({r['prompt_chars']} chars) | {r['n']} | {r['p50_us']:.0f} µs | {r['p99_us']:.0f} µs |")
    return "\n".join(lines) + "\n"
