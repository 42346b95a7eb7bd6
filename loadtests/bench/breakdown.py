"""Where Tierserve's extra time goes, measured hop by hop from the bench's Ray driver.

- HTTP floor: GET /healthz through Serve's proxy and the ingress vs bare vLLM's /health.
- Router hop: one `router.route` handle round trip (the ingress awaits it before dispatch).
- Tier direct: first batch of `tier.generate` over a handle, no proxy or ingress.
Run at concurrency 1 with the targets idle otherwise; each figure is a median.
"""

from __future__ import annotations

import asyncio
import os
import statistics
import time
import urllib.request
from collections.abc import Awaitable, Callable
from typing import Any

import psutil

from loadtests.bench.stream_client import chat_body
from loadtests.bench.targets import pin_process


def _http_ms(url: str, n: int) -> float:
    out = []
    for _ in range(n):
        start = time.perf_counter()
        with urllib.request.urlopen(url, timeout=30) as resp:
            resp.read()
        out.append((time.perf_counter() - start) * 1000)
    return statistics.median(out)


async def _median_ms(fn: Callable[[], Awaitable[Any]], n: int) -> float:
    out = []
    for _ in range(n):
        start = time.perf_counter()
        await fn()
        out.append((time.perf_counter() - start) * 1000)
    return statistics.median(out)


async def _handle_hops(served_model: str, tier_deployment: str, prompt: str, n: int) -> dict[str, float]:
    from ray import serve

    from app.protocol.internal import RouteRequest, TierCall

    router = serve.get_deployment_handle("router", app_name="tierserve")
    tier = serve.get_deployment_handle(tier_deployment, app_name="tierserve")
    route_req = RouteRequest(request_id="bd", endpoint="chat", model=served_model, prompt_text=prompt)
    body = chat_body(served_model, prompt, 64)

    async def first_batch() -> None:
        gen = tier.generate.options(stream=True).remote(TierCall(request_id=f"bd-{time.perf_counter_ns()}",
                                                                 endpoint="chat", body=body))
        await gen.__anext__()
        gen.cancel()

    async def whole_stream() -> None:
        gen = tier.generate.options(stream=True).remote(TierCall(request_id=f"bd-{time.perf_counter_ns()}",
                                                                 endpoint="chat", body=body))
        async for _ in gen:
            pass

    await _median_ms(lambda: router.route.remote(route_req), 5)  # warm the handles
    return {"router_hop_ms": await _median_ms(lambda: router.route.remote(route_req), n),
            "tier_direct_ttft_ms": await _median_ms(first_batch, n),
            "tier_direct_stream_ms": await _median_ms(whole_stream, max(n // 4, 3))}


def hop_breakdown(serve_base: str, bare_base: str, served_model: str, tier_deployment: str,
                  prompt: str, n: int = 40) -> dict[str, float]:
    figures = {"bare_http_floor_ms": _http_ms(f"{bare_base}/health", n),
               "tierserve_http_floor_ms": _http_ms(f"{serve_base}/healthz", n)}
    figures.update(asyncio.run(_handle_hops(served_model, tier_deployment, prompt, n)))
    return figures


# Serve's HTTP path: the Python proxy or, in HAProxy mode, HAProxy's manager (haproxy is its child).
FRONT_ENDS = ("ray::ProxyActor", "ray::HAProxyManager", "ray::ServeReplica:tierserve:",
              "ray::ServeReplica:rayllm:")


def pin_front_ends(cores: list[int], extra_pids: tuple[int, ...] = ()) -> list[int]:
    """Pin this driver's Serve proxy and replica processes (not their vLLM children),
    plus `extra_pids` (the bare server's API process), to `cores`. A prototype of
    keeping the HTTP path off the core the engine spins on (shared/CPU-VLLM.md)."""
    mine = psutil.Process(os.getpid()).children(recursive=True)
    chosen = [p for p in mine if _cmd0(p).startswith(FRONT_ENDS)] + [psutil.Process(p) for p in extra_pids]
    return [p.pid for p in chosen if pin_process(p, cores)]


def _cmd0(proc: psutil.Process) -> str:
    try:
        return (proc.cmdline() or [""])[0]
    except psutil.Error:
        return ""


def _label(proc: psutil.Process) -> str:
    name = _cmd0(proc)
    for key in ("ProxyActor", "HAProxyManager", "haproxy", "ingress", "router", "tier-", "LLMServer",
                "EngineCore", "Worker", "api_server"):
        if key in name or key in " ".join(proc.cmdline()[:4]):
            return key.rstrip("-")
    return "other"


def cpu_split(pids: list[int], run: Callable[[], Any]) -> dict[str, float]:
    """CPU seconds each kind of process (proxy, ingress, router, tier, EngineCore, Worker...)
    used while `run()` ran; says which process pays for the extra hops under load."""
    procs = []
    for pid in pids:
        try:
            root = psutil.Process(pid)
            procs += [root, *root.children(recursive=True)]
        except psutil.Error:
            continue

    def snapshot() -> dict[int, float]:
        out = {}
        for p in procs:
            try:
                t = p.cpu_times()
                out[p.pid] = t.user + t.system
            except psutil.Error:
                continue
        return out

    before = snapshot()
    start = time.perf_counter()
    run()
    wall = time.perf_counter() - start
    after = snapshot()
    split: dict[str, float] = {"wall_s": wall}
    for p in procs:
        if p.pid in before and p.pid in after:
            key = _label(p)
            split[key] = split.get(key, 0.0) + after[p.pid] - before[p.pid]
    return split


def serve_pids() -> list[int]:
    """This driver's Serve processes: proxy and replicas (their engines come as children)."""
    return [p.pid for p in psutil.Process(os.getpid()).children(recursive=True)
            if _cmd0(p).startswith(FRONT_ENDS)]
