"""A small async streaming client: one OpenAI chat stream, timed per token.

Used by the benchmarks instead of locust so a pass is a fixed number of requests
at a fixed concurrency, with nothing between the socket and the clock.
"""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import dataclass, field

import httpx


@dataclass
class StreamTiming:
    ok: bool
    status: int
    ttft_s: float = 0.0
    total_s: float = 0.0
    tokens: int = 0
    # Gaps between content chunks as the client saw them (after the first).
    gaps_s: list[float] = field(default_factory=list)
    tier: str | None = None
    # From the final usage chunk: prompt tokens, and those the engine found in its prefix
    # cache (None unless vLLM's enable_prompt_tokens_details is on).
    prompt_tokens: int = 0
    cached_tokens: int | None = None

    @property
    def itl_s(self) -> float | None:
        """Mean inter-token latency: decode time over tokens after the first."""
        if self.tokens < 2:
            return None
        return (self.total_s - self.ttft_s) / (self.tokens - 1)


def chat_body(model: str, prompt: str, max_tokens: int) -> dict:
    # ignore_eos: every request makes exactly max_tokens, so targets do equal work.
    return {"model": model, "stream": True, "max_tokens": max_tokens, "ignore_eos": True,
            "messages": [{"role": "user", "content": prompt}],
            "stream_options": {"include_usage": True}}


async def stream_chat(client: httpx.AsyncClient, url: str, body: dict,
                      headers: dict[str, str] | None = None) -> StreamTiming:
    start = time.perf_counter()
    first: float | None = None
    last = start
    timing = StreamTiming(ok=False, status=0)
    async with client.stream("POST", url, json=body, headers=headers) as resp:
        timing.status = resp.status_code
        timing.tier = resp.headers.get("x-tierserve-tier")
        if resp.status_code != 200:
            await resp.aread()
            return timing
        async for line in resp.aiter_lines():
            if not line.startswith("data: ") or line == "data: [DONE]":
                continue
            event = json.loads(line[6:])
            if event.get("usage") and not event.get("choices"):
                usage = event["usage"]
                timing.tokens = usage.get("completion_tokens", timing.tokens)
                timing.prompt_tokens = usage.get("prompt_tokens") or 0
                timing.cached_tokens = (usage.get("prompt_tokens_details") or {}).get("cached_tokens")
                continue
            now = time.perf_counter()
            if first is None:
                first = now
            else:
                timing.gaps_s.append(now - last)
            last = now
    end = time.perf_counter()
    timing.ok = first is not None
    timing.ttft_s = (first or end) - start
    timing.total_s = end - start
    return timing


async def run_pass(url: str, body: dict, concurrency: int, requests: int,
                   timeout_s: float = 120, headers: dict[str, str] | None = None
                   ) -> tuple[list[StreamTiming], float]:
    """`requests` streams from `concurrency` workers; returns timings and wall time."""
    queue: asyncio.Queue[int] = asyncio.Queue()
    for i in range(requests):
        queue.put_nowait(i)
    results: list[StreamTiming] = []
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)

    async def worker(client: httpx.AsyncClient) -> None:
        while True:
            try:
                queue.get_nowait()
            except asyncio.QueueEmpty:
                return
            try:
                results.append(await stream_chat(client, url, body, headers))
            except httpx.HTTPError:
                results.append(StreamTiming(ok=False, status=-1))

    async with httpx.AsyncClient(timeout=timeout_s, limits=limits, trust_env=False) as client:
        start = time.perf_counter()
        await asyncio.gather(*(worker(client) for _ in range(concurrency)))
        return results, time.perf_counter() - start
