"""A second Serve app on the session cluster for fault-path tests: the real ingress and
router in front of small fake tiers whose failures the request chooses.

The fake tier speaks TierServer's protocol (`generate(TierCall)` yielding SSE batches, a
TierFinal or a TierError; `ready()`), so everything in front of it is the shipped code.
The last message's text (or the prompt) may hold one command:

    fault:die_before_first:<marker>   exit the replica before any output, once per marker file
    fault:die_after:<n>:<marker>      stream n chunks, then exit the replica (once per marker)
    fault:hang_after:<n>              stream n chunks, then send nothing, ever
    fault:slow_whole:<seconds>        answer a non-streaming request after <seconds>
    fault:pace:<seconds>              stream one chunk every <seconds> (long-lived streams)

Each fault also has a real-vLLM run elsewhere in the suite (e.g. the killed replica in
tests/e2e/test_e2e_routing.py); these keep the fault paths fast and deterministic.
"""

from __future__ import annotations

import socket
import threading
from pathlib import Path
from typing import Any

from app.config.schema import TierserveConfig

APP_NAME = "faults"
ROUTE_PREFIX = "/faults"
deployed: TierserveConfig | None = None  # the config the fault app runs now (this process deployed it)


def fault_config(base: TierserveConfig, redis_url: str) -> TierserveConfig:
    """`base` with short timeouts, so every fault resolves within seconds."""
    data = base.model_dump()
    data["routing"]["fallback"].update(first_token_timeout_s=2, decision_budget_ms=150,
                                       backoff_ms=10, max_attempts=2)
    data["routing"]["affinity"]["store_url"] = redis_url
    # Short answers: the fuzz may ask for any max_tokens, and the fake streams every one.
    data["server"].update(max_tokens_limit=64, default_max_tokens=16)
    # Drains bounded to seconds: a hung fake stream must not hold a redeploy or teardown.
    data["server"]["rollout"].update(drain_timeout_s=30, drain_poll_s=0.5)
    for tier in data["tiers"]:
        tier.update(stream_idle_timeout_s=2, request_timeout_s=60)
        tier["rollout"].update(drain_timeout_s=30, drain_poll_s=0.5)
    return TierserveConfig.model_validate(data)


def deploy_fault_app(config: TierserveConfig) -> None:
    """Deploy, or redeploy (a rolling update of every deployment), the fault app."""
    global deployed
    from ray import serve

    from deployments.ingress import Ingress
    from deployments.router import Router

    class FakeTier:
        """Streams numbered words; fails as the request asks."""

        def __init__(self, tier: str) -> None:
            self._tier = tier

        async def ready(self) -> bool:
            return True

        async def generate(self, call):
            # Only local imports: the class is pickled by value and `tests` is not
            # importable on Ray's workers.
            import asyncio
            import json
            import os
            import time

            from app.protocol.internal import TierFinal

            def _compact(event):  # JSON as vLLM writes its SSE events (no spaces)
                return json.dumps(event, separators=(",", ":"))

            body = call.body
            messages = body.get("messages") or [{"content": body.get("prompt", "")}]
            words = str(messages[-1].get("content") or "").split()
            fault = next((w.split(":")[1:] for w in words if w.startswith("fault:")), [])
            kind = fault[0] if fault else ""

            def once(marker: str) -> bool:  # the first replica to see `marker` claims it
                try:
                    fd = os.open(marker, os.O_CREAT | os.O_EXCL)
                except FileExistsError:
                    return False
                os.close(fd)
                return True

            if kind == "die_before_first" and once(fault[1]):
                os._exit(1)
            n = int(body.get("max_tokens") or call.default_max_tokens or 8)
            # A migrated stream continues its partial answer's numbering, as greedy decoding would.
            start = len(words) if body.get("continue_final_message") else 0
            rid = f"cmpl-{call.request_id}"
            if not body.get("stream"):
                if kind == "slow_whole":
                    await asyncio.sleep(float(fault[1]))
                text = " ".join(f"w{i}" for i in range(n))
                yield TierFinal(body={
                    "id": rid, "object": "chat.completion", "created": int(time.time()),
                    "model": self._tier, "choices": [{"index": 0, "finish_reason": "length",
                                                      "message": {"role": "assistant", "content": text}}],
                    "usage": {"prompt_tokens": 3, "completion_tokens": n, "total_tokens": 3 + n}})
                return
            for i in range(n):
                if kind == "die_after" and i == int(fault[1]) and once(fault[2]):
                    os._exit(1)
                if kind == "hang_after" and i == int(fault[1]):
                    await asyncio.sleep(3600)
                if kind == "pace":
                    await asyncio.sleep(float(fault[1]))
                last = i == n - 1
                chunk = {"id": rid, "object": "chat.completion.chunk", "model": self._tier,
                         "choices": [{"index": 0, "delta": {"content": f"w{start + i} "},
                                      "finish_reason": "length" if last else None}]}
                yield [f"data: {_compact(chunk)}\n\n"]
                await asyncio.sleep(0.01)
            usage = {"id": rid, "object": "chat.completion.chunk", "model": self._tier, "choices": [],
                     # a continuation's prompt holds the partial answer, as vLLM counts it
                     "usage": {"prompt_tokens": 3 + start, "completion_tokens": n,
                               "total_tokens": 3 + start + n}}
            yield [f"data: {_compact(usage)}\n\n", "data: [DONE]\n\n"]

    # The shipped rollout options (app/graph.py), so a redeploy here rolls out as Tierserve's does.
    opts = {"ray_actor_options": {"num_cpus": 0}}
    front = {**opts, **config.server.rollout.serve_options()}
    tiers = {t.name: serve.deployment(FakeTier, name=t.deployment_name, num_replicas=2,
                                      max_ongoing_requests=64, **opts,
                                      **t.rollout.serve_options()).bind(t.name)
             for t in config.tiers}
    router = serve.deployment(Router, name="router", **front).bind(config)
    ingress = serve.deployment(Ingress, name="ingress", max_ongoing_requests=256, **front)
    serve.run(ingress.bind(config, router, tiers), name=APP_NAME, route_prefix=ROUTE_PREFIX)
    deployed = config


class SilentRedis:
    """A TCP server that accepts connections and never answers: a hung Redis."""

    def __init__(self) -> None:
        self._sock = socket.socket()
        self._sock.bind(("127.0.0.1", 0))
        self._sock.listen(64)
        self.port = self._sock.getsockname()[1]
        self._held: list[socket.socket] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()

    def _accept(self) -> None:
        self._sock.settimeout(0.2)
        while not self._stop.is_set():
            try:
                conn, _ = self._sock.accept()
                self._held.append(conn)
            except OSError:
                continue

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=2)
        for conn in self._held:
            conn.close()
        self._sock.close()


def marker(tmp: Path, name: str) -> str:
    return str(tmp / f"{name}.claimed")


def sse_text(events: list[Any]) -> str:
    return "".join(e["choices"][0]["delta"].get("content") or "" for e in events
                   if isinstance(e, dict) and e.get("choices"))
