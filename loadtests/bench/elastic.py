"""`tierserve bench elastic`: autoscaling, scale to zero and node loss on a multi-node cluster.

Starts its own loopback cluster (tooling/cluster.py: a head and worker nodes, own ports and temp
dir, stopped by PID) with a pooled profile (local-elastic: fast 1 -> 2, reasoning 0 -> 1) and
measures, with streaming clients that loop on the fast tier:

- deploy: `ray start` of every node + `serve deploy` until /readyz;
- cold start from zero: a request to the reasoning tier at zero replicas, sent -> answered;
- scale-up: from the load step (low -> high concurrency) until Serve reports the second fast
  replica RUNNING, which a Tierserve replica reaches only after its warm-up generation, so it
  serves from then; TTFT p50/p95 and SLO attainment (share under the tier's TTFT SLO in
  kuberay/chart/files/monitoring/slo.yaml) before the step, during scale-up, and after;
- scale-down: from the load drop until one fast replica is left;
- node kill: SIGKILL of the raylet (and everything under it) of the node holding the fast
  replica, under `auto` load; time until a fast replica is RUNNING on another pool_fast node,
  and requests lost among those that had not started when the node died (target 0).

Each stream sends with its own API key (loadtests/clients.py: created in the bench cluster's
keys database before it starts), as clients of several teams would: the ingress limits each
client to server.rate_limit, so one shared identity would measure that limit, not capacity.
429s are counted apart from SLO misses.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import statistics
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import httpx
import yaml

from app.config import load_config
from app.config.loader import config_dir
from app.config.schema import TierserveConfig
from app.keys.store import KeyStore
from loadtests.clients import ClientPool, bearer, client_keys
from tooling import local_cluster as lc
from tooling.cluster import kill_node, start_cluster
from tooling.observability.slo import load_slo
from tooling.tier_replicas import TierReplica, tier_replicas


@dataclass
class ElasticPlan:
    profile: str = "local-elastic"
    nodes: int = 3
    low_concurrency: int = 2
    high_concurrency: int = 12
    phase_s: float = 20
    max_tokens: int = 64
    scale_timeout_s: float = 300
    # The fast tier's autoscaling policy (app/config/schema.py AutoscalingConfig.policy);
    # None: the profile's own.
    policy: str | None = None
    # API keys the streams send with, dealt one per running stream (loadtests/clients.py);
    # None: as many as the most streams at once. 1: every stream is one client.
    clients: int | None = None

    @property
    def client_count(self) -> int:
        return self.clients or max(self.high_concurrency, 2 * (self.low_concurrency + 1))


@dataclass
class Request:
    sent: float
    ttft_s: float | None = None
    done: bool = False
    status: int = 0
    error: str | None = None  # the error code (non-200), "stream_error", "no_done" or "http"
    client: int | None = None  # which simulated client (API key) sent it


@dataclass
class Load:
    """Streaming clients looping on one model; their count changes between phases."""

    url: str
    model: str
    prompt: str
    max_tokens: int
    keys: list[str] = field(default_factory=list)  # one per simulated client; none: no key
    requests: list[Request] = field(default_factory=list)
    _clients: ClientPool | None = None
    _tasks: list[asyncio.Task] = field(default_factory=list)

    stopping: bool = False

    async def drain(self, timeout_s: float) -> None:
        """Let every client finish its request in flight (up to `timeout_s`), then stop."""
        self.stopping = True
        if self._tasks:
            await asyncio.wait(self._tasks, timeout=timeout_s)
        self.resize(0, None)

    def resize(self, n: int, client: httpx.AsyncClient | None) -> None:
        while len(self._tasks) < n:
            self._tasks.append(asyncio.create_task(self._loop(client)))
        while len(self._tasks) > n:
            self._tasks.pop().cancel()

    async def _loop(self, client: httpx.AsyncClient) -> None:
        if self.keys and self._clients is None:
            self._clients = ClientPool(len(self.keys))
        who = self._clients.acquire() if self._clients else None
        try:
            await self._send_until_stopped(client, who)
        finally:
            if self._clients is not None and who is not None:
                self._clients.release(who)

    async def _send_until_stopped(self, client: httpx.AsyncClient, who: int | None) -> None:
        body = {"model": self.model, "stream": True, "max_tokens": self.max_tokens, "ignore_eos": True,
                "messages": [{"role": "user", "content": self.prompt}]}
        headers = bearer(self.keys[who]) if who is not None else {}
        while not self.stopping:
            req = Request(sent=time.monotonic(), client=who)
            self.requests.append(req)
            try:
                async with client.stream("POST", self.url, json=body, headers=headers) as resp:
                    req.status = resp.status_code
                    if resp.status_code != 200:
                        raw = await resp.aread()
                        req.error = str((json.loads(raw).get("error") or {}).get("code") or resp.status_code)
                        continue
                    async for line in resp.aiter_lines():
                        if req.ttft_s is None and line.startswith("data: {"):
                            req.ttft_s = time.monotonic() - req.sent
                        if line.startswith("data: {") and '"error"' in line:
                            req.error = "stream_error"
                        if line == "data: [DONE]":
                            req.done = req.error is None
                    if not req.done and req.error is None:
                        req.error = "no_done"
            except (httpx.HTTPError, ValueError):
                req.status, req.error = -1, "http"
            except asyncio.CancelledError:  # the bench ended this client, not the server
                req.error = "cancelled"
                raise
            finally:
                await asyncio.sleep(0.05)


def ttft_stats(reqs: list[Request], slo_s: float) -> dict[str, Any]:
    """TTFT of the answered requests; SLO attainment over every request sent (an error or a
    rate-limit 429 is a miss); apart: the 429s, and the misses that were not 429s (slow or
    failed answers: what capacity decides); errors by code."""
    ttfts = sorted(r.ttft_s for r in reqs if r.ttft_s is not None and r.done)
    errors: dict[str, int] = {}
    reqs = [r for r in reqs if r.error != "cancelled"]
    for r in reqs:
        if r.error:
            errors[r.error] = errors.get(r.error, 0) + 1
    rate_limited = sum(r.status == 429 for r in reqs)
    met = sum(t <= slo_s for t in ttfts)
    counts = {"n": len(reqs), "rate_limited": rate_limited, "slo_misses": len(reqs) - met - rate_limited,
              "clients": len({r.client for r in reqs if r.client is not None}), "errors": errors}
    if not ttfts:
        return {**counts, "ttft_p50_s": None, "ttft_p95_s": None, "slo_attainment": None}
    p95 = ttfts[min(len(ttfts) - 1, int(0.95 * len(ttfts)))]
    return {**counts, "ttft_p50_s": round(statistics.median(ttfts), 3), "ttft_p95_s": round(p95, 3),
            "slo_attainment": round(met / max(1, len(reqs)), 3)}


def _sent_between(reqs: list[Request], start: float, end: float) -> list[Request]:
    return [r for r in reqs if start <= r.sent < end]


async def _replicas(dashboard: str, config: TierserveConfig, tier: str) -> list[TierReplica]:
    reps = await asyncio.to_thread(tier_replicas, dashboard, config)
    return [r for r in reps if r.tier == tier]


async def _until(what: str, check, timeout_s: float) -> float:
    """Seconds until `check()` (async) is true, polled every 0.5 s."""
    start = time.monotonic()
    while time.monotonic() - start < timeout_s:
        try:
            if await check():
                return time.monotonic() - start
        except Exception:  # the dashboard may be busy during a node loss; ask again
            pass
        await asyncio.sleep(0.5)
    raise TimeoutError(f"{what} not within {timeout_s:.0f}s")


async def _measure(plan: ElasticPlan, stack: lc.LocalStack, config: TierserveConfig,
                   deploy_s: float, keys: list[str]) -> dict[str, Any]:
    url = f"{stack.base_url}/v1/chat/completions"
    fast_slo = next(t.ttft_p95_seconds for t in load_slo().tiers if t.name == "fast")
    dash = stack.dashboard_url
    out: dict[str, Any] = {"deploy_to_ready_s": round(deploy_s, 1), "fast_ttft_slo_s": fast_slo}

    async def running(tier: str) -> list[TierReplica]:
        return [r for r in await _replicas(dash, config, tier) if r.state == "RUNNING"]

    limits = httpx.Limits(max_connections=64)
    async with httpx.AsyncClient(timeout=600, limits=limits, trust_env=False) as client:
        # Cold start from zero: the reasoning tier has no replica yet.
        assert not await running("reasoning"), "reasoning tier is not at zero"
        sent = time.monotonic()
        resp = await client.post(url, json={"model": "tiny-reasoning", "max_tokens": 8,
                                            "messages": [{"role": "user", "content": "Hi."}]},
                                 headers=bearer(keys[0]))
        out["cold_start_from_zero_s"] = round(time.monotonic() - sent, 1)
        out["cold_start_status"] = resp.status_code

        fast = Load(url, "tiny-fast", "Say hi to the team.", plan.max_tokens, keys)
        fast.resize(plan.low_concurrency, client)
        t0 = time.monotonic()
        await asyncio.sleep(plan.phase_s)
        t_step = time.monotonic()
        fast.resize(plan.high_concurrency, client)
        scale_up_s: float | None
        try:  # a policy may judge one replica enough: that is a result, not a failure
            scale_up_s = await _until("second fast replica RUNNING",
                                      lambda: _count_is(running, "fast", 2), plan.scale_timeout_s)
        except TimeoutError:
            scale_up_s = None
        t_scaled = time.monotonic()
        await asyncio.sleep(plan.phase_s)
        t_drop = time.monotonic()
        fast.resize(plan.low_concurrency, client)
        out["scale_up_s"] = None if scale_up_s is None else round(scale_up_s, 1)
        out["ttft_before"] = ttft_stats(_sent_between(fast.requests, t0, t_step), fast_slo)
        out["ttft_during_scale_up"] = ttft_stats(_sent_between(fast.requests, t_step, t_scaled), fast_slo)
        out["ttft_after"] = ttft_stats(_sent_between(fast.requests, t_scaled, t_drop), fast_slo)
        out["scale_down_s"] = None
        if scale_up_s is not None:
            scale_down_s = await _until("back to one fast replica",
                                        lambda: _count_is(running, "fast", 1), plan.scale_timeout_s)
            out["scale_down_s"] = round(scale_down_s, 1)
        fast.resize(0, client)

        # Node loss under `auto` load.
        (victim,) = await running("fast")
        import psutil

        raylet = next(p for p in psutil.Process(victim.pid).parents() if p.name() == "raylet")
        auto = Load(url, "auto", "Say hi to the team.", plan.max_tokens, keys)
        auto.resize(plan.low_concurrency + 1, client)
        await asyncio.sleep(5)
        killed_at = time.monotonic()
        await asyncio.to_thread(kill_node, raylet.pid)
        # Fresh clients too: those streaming at the kill may wait on their dead replica's stream.
        auto.resize(2 * (plan.low_concurrency + 1), client)

        async def moved() -> bool:
            return any(r.node_id != victim.node_id for r in await running("fast"))

        out["node_kill_recovery_s"] = round(await _until("fast replica on another node", moved,
                                                         plan.scale_timeout_s), 1)
        await asyncio.sleep(5)
        await auto.drain(plan.scale_timeout_s)
        unstarted = [r for r in auto.requests if r.ttft_s is None or r.sent + r.ttft_s >= killed_at]
        finished = [r for r in unstarted if r.error != "cancelled" and (r.done or r.status != 0)]
        out["node_kill_requests"] = len(auto.requests)
        out["node_kill_unstarted"] = len(finished)
        out["node_kill_lost"] = sum(not r.done for r in finished)
        out["node_kill_lost_errors"] = [r.error for r in finished if not r.done]
    return out


async def _count_is(running, tier: str, n: int) -> bool:
    return len(await running(tier)) == n


def _config_with_policy(profile: str, policy: str, tmp: Path) -> Path:
    """A copy of configs/ whose profile's fast tier uses `policy` (the replicas read it through
    TIERSERVE_CONFIG_DIR, which reaches them through the raylets' environment)."""
    root = tmp / "configs"
    shutil.copytree(config_dir(), root)
    path = root / "profiles" / f"{profile}.yaml"
    doc = yaml.safe_load(path.read_text())
    fast = next(t for t in doc["tiers"] if t["name"] == "fast")
    fast["autoscaling"] = {**fast.get("autoscaling", {}), "policy": policy}
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return root


def run_elastic(plan: ElasticPlan, out_dir: Path) -> dict[str, Any]:
    temp_dir = tempfile.mkdtemp(prefix="tsbe-", dir="/tmp")
    saved_dir = os.environ.get("TIERSERVE_CONFIG_DIR")
    if plan.policy:
        configs = _config_with_policy(plan.profile, plan.policy, Path(temp_dir))
        os.environ["TIERSERVE_CONFIG_DIR"] = str(configs)
    config = load_config(plan.profile)
    saved = os.environ.get(config.server.keys.db_url_env)
    db_url = f"sqlite:///{temp_dir}/keys.db"  # the cluster's own, keyed by the clients' keys
    os.environ[config.server.keys.db_url_env] = db_url
    stack = lc.LocalStack(gcs_port=lc.free_port(), dashboard_port=lc.free_port(),
                          metrics_port=lc.free_port(), serve_port=lc.free_port(),
                          haproxy_metrics_port=lc.free_port(), haproxy_stats_port=lc.free_port(),
                          temp_dir=temp_dir)
    store = KeyStore(db_url)
    try:
        with client_keys(store, plan.client_count, "bench-elastic") as keys:
            started = time.monotonic()
            start_cluster(config, stack, plan.nodes)
            lc.wait_ready(stack.base_url, 900)
            result = asyncio.run(_measure(plan, stack, config, time.monotonic() - started, keys))
    finally:
        store.close()
        lc.stop(stack)
        if keep := os.environ.get("TIERSERVE_BENCH_KEEP_LOGS"):  # Ray's logs (controller's decisions)
            shutil.copytree(Path(temp_dir) / "session_latest" / "logs", keep, dirs_exist_ok=True)
        shutil.rmtree(temp_dir, ignore_errors=True)
        for key, value in ((config.server.keys.db_url_env, saved), ("TIERSERVE_CONFIG_DIR", saved_dir)):
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
    result["plan"] = asdict(plan)
    result["clients"] = plan.client_count
    result["fast_policy"] = next(t for t in config.tiers if t.name == "fast").autoscaling.policy
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "elastic.json").write_text(json.dumps(result, indent=2))
    return result


def _secs(value: float | None, r: dict[str, Any]) -> str:
    return f"{value} s" if value is not None else f"none within {r['plan']['scale_timeout_s']:.0f} s"


def table(r: dict[str, Any]) -> str:
    def row(name: str, s: dict[str, Any]) -> str:
        return (f"| TTFT {name} | p50 {s['ttft_p50_s']} s, p95 {s['ttft_p95_s']} s, "
                f"SLO attainment {s['slo_attainment']} (n={s['n']}; misses other than 429: "
                f"{s.get('slo_misses', '?')}; 429s: {s.get('rate_limited', '?')}; "
                f"errors {s['errors'] or 0}) |")

    lines = ["| measure | value |", "|---|---|",
             f"| deploy -> ready ({r['plan']['nodes']} workers + head) | {r['deploy_to_ready_s']} s |",
             f"| cold start from zero (request -> answer) | {r['cold_start_from_zero_s']} s "
             f"(status {r['cold_start_status']}) |",
             f"| fast tier autoscaling policy | {r.get('fast_policy', 'ongoing_requests')} |",
             f"| simulated clients (an API key each, one per stream) | {r.get('clients', 'none')} |",
             f"| scale-up: load step -> 2nd fast replica serving | {_secs(r['scale_up_s'], r)} |",
             row("before step", r["ttft_before"]), row("during scale-up", r["ttft_during_scale_up"]),
             row("after scale-up", r["ttft_after"]),
             f"| scale-down: load drop -> 1 fast replica | {_secs(r['scale_down_s'], r)} |",
             f"| node kill -> fast replica serving on another node | {r['node_kill_recovery_s']} s |",
             f"| requests not started at the kill: lost / total | {r['node_kill_lost']} / "
             f"{r['node_kill_unstarted']} {r['node_kill_lost_errors'] or ''} |"]
    return "\n".join(lines)
