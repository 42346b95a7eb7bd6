"""`tierserve bench faults`: steady streaming load on a local stack while its replicas die.

Starts its own stack (own ports and Ray temp dir, the same `ray start` + `serve deploy` as
`tierserve up`), keeps `concurrency` clients streaming `model: "auto"` chats, and per
phase applies one fault: none (the baseline), SIGKILL of the fast tier's replica process
(an OOM kill), SIGKILL of the reasoning tier's, and `hang:redis`: the Redis that holds
session affinity (a redis-server the bench starts; every client keeps one session) stopped
with SIGSTOP for `hang_s`, then resumed: it accepts connections and answers nothing; and
`redeploy`: the stack's copy of configs/ changed (server.max_in_flight), re-rendered and
`serve deploy`ed, so every deployment is replaced while the clients stream (the phase runs
until the rollout has finished).
Each request is classified:

- ok: 200 and the stream ended with `[DONE]`, no error event;
- migrated: ok, and the last chunk names more than one tier (`tierserve.served_by`);
- retried: ok after a retry or fallback before its first token (route reason);
- clean_error: 429/503 with Retry-After, 4xx in OpenAI's shape, or a stream that ended
  with an error event and `[DONE]`;
- lost: anything else (a 5xx, a dropped connection, a stream without `[DONE]`).

Added latency is the phase's p50/p95 minus the baseline's, over the requests that were
in flight when the replica died (or while Redis hung).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import httpx
import yaml

from app.config.loader import config_dir
from tooling.local_cluster import (
    LocalStack,
    StackError,
    engine_env,
    free_port,
    run_ray_cli,
    serve_deploy,
    stack_processes,
    start_private_stack,
    stop,
    wait_ready,
)

EASY = ["Hello!", "Thanks, that helps.", "What is the capital of France?", "Say hi to the team."]
HARD = ["Prove step by step that there are infinitely many primes.",
        "Write a Python function that parses ISO dates and explain its complexity step by step."]


@dataclass
class FaultsPlan:
    concurrency: int = 8
    phase_s: float = 30
    kill_after_s: float = 8
    max_tokens: int = 64
    hard_share: float = 0.3
    phases: list[str] = field(default_factory=lambda: ["none", "kill:fast", "kill:reasoning",
                                                       "hang:redis", "redeploy"])
    hang_s: float = 10
    profile: str = "local-cpu"
    seed: int = 7


@dataclass
class Outcome:
    start: float
    end: float
    status: int
    kind: str  # ok | migrated | retried | clean_error | lost
    reason: str = ""


async def one_request(client: httpx.AsyncClient, url: str, body: dict,
                      headers: dict[str, str] | None = None) -> Outcome:
    start = time.monotonic()
    try:
        async with client.stream("POST", url, json=body, headers=headers) as resp:
            reason = resp.headers.get("x-tierserve-route-reason", "")
            if resp.status_code != 200:
                raw = await resp.aread()
                clean = _openai_error(raw) and (resp.status_code < 500 or "retry-after" in resp.headers)
                return Outcome(start, time.monotonic(), resp.status_code,
                               "clean_error" if clean else "lost", reason)
            done = errored = migrated = False
            async for line in resp.aiter_lines():
                if line == "data: [DONE]":
                    done = True
                elif line.startswith("data: {"):
                    event = json.loads(line[6:])
                    errored = errored or "error" in event
                    migrated = migrated or len((event.get("tierserve") or {}).get("served_by", [])) > 1
    except httpx.HTTPError:
        return Outcome(start, time.monotonic(), -1, "lost")
    kind = ("lost" if not done else "clean_error" if errored else "migrated" if migrated
            else "retried" if reason.startswith(("retry", "fallback")) else "ok")
    return Outcome(start, time.monotonic(), 200, kind, reason)


def _openai_error(raw: bytes) -> bool:
    try:
        err = json.loads(raw)["error"]
    except (ValueError, KeyError, TypeError):
        return False
    return {"message", "type", "param", "code"} <= set(err)


Window = tuple[float, float]


async def run_phase(url: str, plan: FaultsPlan, fault: str, stack: LocalStack, rng: random.Random,
                    redis: subprocess.Popen | None = None) -> tuple[list[Outcome], Window | None]:
    """The phase's outcomes and its fault's window (start, end; one instant for a kill)."""
    outcomes: list[Outcome] = []
    deadline = time.monotonic() + plan.phase_s
    window: Window | None = None
    busy = False  # a fault still under way keeps the clients going past the deadline

    async def client_loop(client: httpx.AsyncClient, session: str) -> None:
        while time.monotonic() < deadline or busy:
            prompt = rng.choice(HARD if rng.random() < plan.hard_share else EASY)
            body = {"model": "auto", "stream": True, "max_tokens": plan.max_tokens, "ignore_eos": True,
                    "messages": [{"role": "user", "content": prompt}]}
            outcomes.append(await one_request(client, url, body, {"x-session-id": session}))

    async def fault_loop() -> None:
        nonlocal window, busy
        if fault == "none":
            return
        await asyncio.sleep(plan.kill_after_s)
        kind, _, target = fault.partition(":")
        start = time.monotonic()
        if kind == "redeploy":
            busy = True
            try:
                await asyncio.to_thread(redeploy_changed_config, stack, plan.profile)
                # Serve takes the new config asynchronously (a build task imports the app first,
                # tens of seconds on a busy CPU): first see the rollout start.
                started = time.monotonic()
                while await asyncio.to_thread(app_status, stack) == "RUNNING":
                    if time.monotonic() - started > 300:
                        raise RuntimeError("serve deploy of a changed config started no rollout")
                    await asyncio.sleep(0.5)
                while not await asyncio.to_thread(rollout_finished, stack):
                    await asyncio.sleep(2)
            finally:
                busy = False
        elif kind == "kill":
            kill_replica(stack, target)
        elif kind == "hang" and target == "redis" and redis is not None:
            os.kill(redis.pid, signal.SIGSTOP)
            try:
                await asyncio.sleep(plan.hang_s)
            finally:
                os.kill(redis.pid, signal.SIGCONT)
        else:
            raise ValueError(f"unknown fault {fault!r}")
        window = (start, start if kind == "kill" else time.monotonic())

    limits = httpx.Limits(max_connections=plan.concurrency)
    async with httpx.AsyncClient(timeout=300, limits=limits, trust_env=False) as client:
        await asyncio.gather(fault_loop(), *(client_loop(client, f"bench-session-{i}")
                                             for i in range(plan.concurrency)))
    return outcomes, window


def kill_replica(stack: LocalStack, tier: str) -> int:
    """SIGKILL the tier's replica process, as the kernel's OOM killer would."""
    for proc in stack_processes(stack):
        try:
            if f"ServeReplica:tierserve:tier-{tier}" in " ".join(proc.cmdline()):
                os.kill(proc.pid, signal.SIGKILL)
                return proc.pid
        except OSError:
            continue
    raise RuntimeError(f"no running replica of tier {tier!r} in the stack")


def _pct(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def summarise(fault: str, outcomes: list[Outcome], window: Window | None,
              baseline: dict[str, Any] | None) -> dict[str, Any]:
    kinds = ("ok", "migrated", "retried", "clean_error", "lost")
    counts = {k: sum(o.kind == k for o in outcomes) for k in kinds}
    latencies = [o.end - o.start for o in outcomes if o.kind != "lost"]
    row: dict[str, Any] = {"fault": fault, "sent": len(outcomes), **counts,
                           "p50_ms": _ms(_pct(latencies, 0.5)), "p95_ms": _ms(_pct(latencies, 0.95))}
    # Routed to the default tier because the router missed its budget (e.g. a hung Redis).
    row["router_timeouts"] = sum(o.reason == "router_timeout" for o in outcomes)
    if window is not None:
        row["fault_s"] = round(window[1] - window[0], 1)  # a hang's length, a rollout's duration
        caught = [o.end - o.start for o in outcomes
                  if o.start <= window[1] and o.end >= window[0] and o.kind != "lost"]
        row["caught"] = len(caught)
        row["caught_p50_ms"], row["caught_p95_ms"] = _ms(_pct(caught, 0.5)), _ms(_pct(caught, 0.95))
        if baseline:
            row["added_p50_ms"] = _sub(row["caught_p50_ms"], baseline["p50_ms"])
            row["added_p95_ms"] = _sub(row["caught_p95_ms"], baseline["p95_ms"])
    return row


def _ms(s: float | None) -> float | None:
    return None if s is None else round(s * 1000, 1)


def _sub(a: float | None, b: float | None) -> float | None:
    return None if a is None or b is None else round(a - b, 1)


def redeploy_changed_config(stack: LocalStack, profile: str) -> None:
    """What an operator does: change configs/ (here the stack's own copy), render the Serve
    config, `serve deploy` it. The change is the ingress's in-flight cap, which (unlike the
    live routing settings, a lightweight router update) rebuilds the app: every deployment,
    vLLM engines included, is replaced."""
    from app.config.loader import load_config
    from app.serve_config import render_serve_config

    server_file = config_dir() / "server.yaml"
    server = yaml.safe_load(server_file.read_text())
    server["max_in_flight"] = int(server.get("max_in_flight", 256)) + 1
    server_file.write_text(yaml.safe_dump(server, sort_keys=False))
    cfg_file = Path(stack.temp_dir) / "serve_config.yaml"
    cfg_file.write_text(yaml.safe_dump(render_serve_config(load_config(profile), http_port=stack.serve_port),
                                       sort_keys=False))
    serve_deploy(stack, cfg_file)


def _serve_app(stack: LocalStack) -> dict[str, Any] | None:
    """The tierserve app as `serve status` reports it (None when it cannot say)."""
    try:
        out = run_ray_cli([str(Path(sys.executable).with_name("serve")), "status", "--address",
                           stack.dashboard_url], engine_env(), "serve status")
        return yaml.safe_load(out)["applications"]["tierserve"]
    except (StackError, ValueError, KeyError, TypeError):
        return None


def app_status(stack: LocalStack) -> str:
    app = _serve_app(stack)
    return app["status"] if app else "UNKNOWN"


def rollout_finished(stack: LocalStack) -> bool:
    """Whether the app runs again with only its target replicas (none left draining)."""
    app = _serve_app(stack)
    return app is not None and app["status"] == "RUNNING" and all(
        dep["status"] == "HEALTHY" and set(dep.get("replica_states") or {}) == {"RUNNING"}
        for dep in app["deployments"].values())


@contextmanager
def bench_configs(temp_dir: str, redis_url: str | None) -> Iterator[Path]:
    """A copy of configs/ for the stack (TIERSERVE_CONFIG_DIR, read by the stack's nodes
    too), with session affinity in `redis_url` when given; `redeploy` edits this copy."""
    configs = Path(temp_dir) / "configs"
    shutil.copytree(config_dir(), configs, dirs_exist_ok=True)
    if redis_url:
        routing = yaml.safe_load((configs / "routing.yaml").read_text())
        routing.setdefault("affinity", {})["store_url"] = redis_url
        (configs / "routing.yaml").write_text(yaml.safe_dump(routing, sort_keys=False))
    saved = os.environ.get("TIERSERVE_CONFIG_DIR")
    os.environ["TIERSERVE_CONFIG_DIR"] = str(configs)
    try:
        yield configs
    finally:
        if saved is None:
            os.environ.pop("TIERSERVE_CONFIG_DIR", None)
        else:
            os.environ["TIERSERVE_CONFIG_DIR"] = saved


@contextmanager
def redis_for_affinity(temp_dir: str) -> Iterator[tuple[subprocess.Popen, str]]:
    """A redis-server of the bench's own (its process, its URL)."""
    binary = shutil.which("redis-server")
    if binary is None:
        raise RuntimeError("hang:redis needs redis-server (scripts/setup.sh installs it)")
    port, work = free_port(), Path(temp_dir) / "redis"
    work.mkdir(parents=True, exist_ok=True)
    proc = subprocess.Popen([binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                             "--appendonly", "no", "--dir", str(work)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"redis-server did not start on port {port}") from None
                time.sleep(0.05)
        yield proc, f"redis://127.0.0.1:{port}/0"
    finally:
        os.kill(proc.pid, signal.SIGCONT)
        proc.terminate()
        proc.wait(timeout=10)


def run_faults(plan: FaultsPlan, out: Path) -> list[dict[str, Any]]:
    out.mkdir(parents=True, exist_ok=True)
    temp_dir = f"/tmp/tsf-{os.getpid()}"
    rng = random.Random(plan.seed)
    rows: list[dict[str, Any]] = []
    stack = None
    with contextlib.ExitStack() as resources:
        redis, redis_url = (resources.enter_context(redis_for_affinity(temp_dir))
                            if "hang:redis" in plan.phases else (None, None))
        resources.enter_context(bench_configs(temp_dir, redis_url))
        try:
            print(f"starting a stack in {temp_dir} ...", flush=True)
            stack = start_private_stack(plan.profile, temp_dir)
            _run_phases(plan, stack, rng, redis, rows, out)
        finally:
            if stack is not None:
                stop(stack)
    (out / "summary.json").write_text(json.dumps({"plan": asdict(plan), "rows": rows}, indent=2))
    (out / "faults.md").write_text(table(rows))
    return rows


def _run_phases(plan: FaultsPlan, stack: LocalStack, rng: random.Random,
                redis: subprocess.Popen | None, rows: list[dict[str, Any]], out: Path) -> None:
    url = f"{stack.base_url}/v1/chat/completions"
    baseline = None
    for fault in plan.phases:
        wait_ready(stack.base_url, 900)  # the previous phase's replica is back
        print(f"phase {fault}: {plan.concurrency} streams for {plan.phase_s:.0f}s", flush=True)
        outcomes, window = asyncio.run(run_phase(url, plan, fault, stack, rng, redis))
        row = summarise(fault, outcomes, window, baseline)
        baseline = baseline or row
        rows.append(row)
        print(json.dumps(row), flush=True)
        (out / f"{fault.replace(':', '-')}.json").write_text(json.dumps([asdict(o) for o in outcomes]))


def table(rows: list[dict[str, Any]]) -> str:
    head = ("| fault | sent | ok | retried | migrated | clean errors | lost | router timeouts | "
            "p50 / p95 ms | in flight at the fault | their p50 / p95 ms | added p50 / p95 ms |\n|"
            + "---|" * 12 + "\n")
    lines = []
    for r in rows:
        lines.append(
            f"| {r['fault']} | {r['sent']} | {r['ok']} | {r['retried']} | {r['migrated']} | "
            f"{r['clean_error']} | **{r['lost']}** | {r.get('router_timeouts', '–')} | "
            f"{r['p50_ms']} / {r['p95_ms']} | "
            f"{r.get('caught', '–')} | "
            f"{r.get('caught_p50_ms', '–')} / {r.get('caught_p95_ms', '–')} | "
            f"{r.get('added_p50_ms', '–')} / {r.get('added_p95_ms', '–')} |")
    return head + "\n".join(lines) + "\n"
