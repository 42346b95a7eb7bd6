"""`tierserve bench faults`: steady streaming load on a local stack while its replicas die.

Starts its own stack (own ports and Ray temp dir, the same `ray start` + `serve deploy` as
`tierserve up`), keeps `concurrency` clients streaming `model: "auto"` chats, and per
phase applies one fault: none (the baseline), SIGKILL of the fast tier's replica process
(an OOM kill), SIGKILL of the reasoning tier's. Each request is classified:

- ok: 200 and the stream ended with `[DONE]`, no error event;
- migrated: ok, and the last chunk names more than one tier (`tierserve.served_by`);
- retried: ok after a retry or fallback before its first token (route reason);
- clean_error: 429/503 with Retry-After, 4xx in OpenAI's shape, or a stream that ended
  with an error event and `[DONE]`;
- lost: anything else (a 5xx, a dropped connection, a stream without `[DONE]`).

Added latency is the phase's p50/p95 minus the baseline's, over the requests that were
in flight when the replica died.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import signal
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import httpx

from app.local_cluster import LocalStack, stack_processes, start_private_stack, stop, wait_ready

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
    phases: list[str] = field(default_factory=lambda: ["none", "kill:fast", "kill:reasoning"])
    profile: str = "local-cpu"
    seed: int = 7


@dataclass
class Outcome:
    start: float
    end: float
    status: int
    kind: str  # ok | migrated | retried | clean_error | lost
    reason: str = ""


async def one_request(client: httpx.AsyncClient, url: str, body: dict) -> Outcome:
    start = time.monotonic()
    try:
        async with client.stream("POST", url, json=body) as resp:
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


async def run_phase(url: str, plan: FaultsPlan, fault: str, stack: LocalStack,
                    rng: random.Random) -> tuple[list[Outcome], float | None]:
    outcomes: list[Outcome] = []
    deadline = time.monotonic() + plan.phase_s
    killed_at: float | None = None

    async def client_loop(client: httpx.AsyncClient) -> None:
        while time.monotonic() < deadline:
            prompt = rng.choice(HARD if rng.random() < plan.hard_share else EASY)
            body = {"model": "auto", "stream": True, "max_tokens": plan.max_tokens, "ignore_eos": True,
                    "messages": [{"role": "user", "content": prompt}]}
            outcomes.append(await one_request(client, url, body))

    async def fault_loop() -> None:
        nonlocal killed_at
        if fault == "none":
            return
        await asyncio.sleep(plan.kill_after_s)
        tier = fault.split(":", 1)[1]
        killed_at = time.monotonic()
        kill_replica(stack, tier)

    limits = httpx.Limits(max_connections=plan.concurrency)
    async with httpx.AsyncClient(timeout=300, limits=limits, trust_env=False) as client:
        await asyncio.gather(fault_loop(), *(client_loop(client) for _ in range(plan.concurrency)))
    return outcomes, killed_at


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


def summarise(fault: str, outcomes: list[Outcome], killed_at: float | None,
              baseline: dict[str, Any] | None) -> dict[str, Any]:
    kinds = ("ok", "migrated", "retried", "clean_error", "lost")
    counts = {k: sum(o.kind == k for o in outcomes) for k in kinds}
    latencies = [o.end - o.start for o in outcomes if o.kind != "lost"]
    row: dict[str, Any] = {"fault": fault, "sent": len(outcomes), **counts,
                           "p50_ms": _ms(_pct(latencies, 0.5)), "p95_ms": _ms(_pct(latencies, 0.95))}
    if killed_at is not None:
        caught = [o.end - o.start for o in outcomes if o.start <= killed_at <= o.end and o.kind != "lost"]
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


def run_faults(plan: FaultsPlan, out: Path) -> list[dict[str, Any]]:
    out.mkdir(parents=True, exist_ok=True)
    temp_dir = f"/tmp/tsf-{os.getpid()}"
    rng = random.Random(plan.seed)
    rows: list[dict[str, Any]] = []
    stack = None
    try:
        print(f"starting a stack in {temp_dir} ...", flush=True)
        stack = start_private_stack(plan.profile, temp_dir)
        url = f"{stack.base_url}/v1/chat/completions"
        baseline = None
        for fault in plan.phases:
            wait_ready(stack.base_url, 900)  # the previous phase's replica is back
            print(f"phase {fault}: {plan.concurrency} streams for {plan.phase_s:.0f}s", flush=True)
            outcomes, killed_at = asyncio.run(run_phase(url, plan, fault, stack, rng))
            row = summarise(fault, outcomes, killed_at, baseline)
            baseline = baseline or row
            rows.append(row)
            print(json.dumps(row), flush=True)
            (out / f"{fault.replace(':', '-')}.json").write_text(
                json.dumps([asdict(o) for o in outcomes]))
    finally:
        if stack is not None:
            stop(stack)
    (out / "summary.json").write_text(json.dumps({"plan": asdict(plan), "rows": rows}, indent=2))
    (out / "faults.md").write_text(table(rows))
    return rows


def table(rows: list[dict[str, Any]]) -> str:
    head = ("| fault | sent | ok | retried | migrated | clean errors | lost | p50 / p95 ms | "
            "in flight at the kill | their p50 / p95 ms | added p50 / p95 ms |\n|" + "---|" * 11 + "\n")
    lines = []
    for r in rows:
        lines.append(
            f"| {r['fault']} | {r['sent']} | {r['ok']} | {r['retried']} | {r['migrated']} | "
            f"{r['clean_error']} | **{r['lost']}** | {r['p50_ms']} / {r['p95_ms']} | "
            f"{r.get('caught', '–')} | "
            f"{r.get('caught_p50_ms', '–')} / {r.get('caught_p95_ms', '–')} | "
            f"{r.get('added_p50_ms', '–')} / {r.get('added_p95_ms', '–')} |")
    return head + "\n".join(lines) + "\n"
