"""Tierserve's locust scenarios: `locust -f loadtests/locustfile.py --host http://127.0.0.1:8000`.

The scenario (see loadtests/scenario.py) comes from $TIERSERVE_LOADTEST_SCENARIO
as JSON; `tierserve loadtest` sets it. Streaming requests also report `TTFT`
(ms) and `TOKENS_PER_S` (tokens/s, shown in locust's ms columns) as their own
statistics, named by tier; every response's `x-tierserve-tier` counts as a `TIER` event.
With keys in $TIERSERVE_LOADTEST_KEYS (`--clients`), each running user sends with its own
(loadtests/clients.py), as the clients of many teams would.
"""

from __future__ import annotations

import itertools
import json
import os
import random
import time
import uuid
from pathlib import Path

from locust import HttpUser, LoadTestShape, constant_throughput, task

from loadtests.clients import ClientPool, bearer, keys_from_env
from loadtests.prompts import DEFAULT_PROMPTS, PROMPTS_ENV, PromptBank
from loadtests.records import RECORDS_ENV, RecordWriter, RequestRecord
from loadtests.scenario import Scenario

SCENARIO = Scenario.from_env()
PROMPTS = PromptBank.load(Path(os.environ.get(PROMPTS_ENV) or DEFAULT_PROMPTS))
_records_path = os.environ.get(RECORDS_ENV)
_WRITER = RecordWriter(open(_records_path, "a")) if _records_path else None  # noqa: SIM115
_ids = itertools.count()
CLIENT_KEYS = keys_from_env()
_CLIENTS = ClientPool(len(CLIENT_KEYS)) if CLIENT_KEYS else None
LONE_PROMPT_CHARS = 2000


def _api_headers() -> dict[str, str]:
    return bearer(os.environ.get("TIERSERVE_API_KEY") or os.environ.get("OPENAI_API_KEY"))


def _fire(environment, request_type: str, name: str, value: float, length: int = 0) -> None:
    environment.events.request.fire(request_type=request_type, name=name, response_time=value,
                                    response_length=length, exception=None, context={})


class ChatUser(HttpUser):
    """Sends chat completions: easy or hard prompts, short or long answers, maybe a session."""

    scenario = SCENARIO

    def wait_time(self) -> float:
        if self.scenario.rate_rps:  # each user keeps its share of the total rate, net of request time
            return constant_throughput(self.scenario.rate_rps / self.scenario.users)(self)
        return 0.0

    def on_start(self) -> None:
        self.rng = random.Random(next(_ids))
        self.session_id = f"lt-{uuid.uuid4().hex[:12]}"
        self.history: list[dict[str, str]] = []
        self.client_index = _CLIENTS.acquire() if _CLIENTS else None

    def on_stop(self) -> None:
        if _CLIENTS is not None and self.client_index is not None:
            _CLIENTS.release(self.client_index)
            self.client_index = None

    def _auth(self) -> dict[str, str]:
        if self.client_index is not None:
            return bearer(CLIENT_KEYS[self.client_index])
        return _api_headers()

    def _messages(self, text: str) -> list[dict[str, str]]:
        # A long prompt goes alone: with history it would outgrow the tier's context.
        if not self.scenario.session_turns or len(text) > LONE_PROMPT_CHARS:
            return [{"role": "user", "content": text}]
        if len(self.history) >= 2 * self.scenario.session_turns:  # conversation done: start anew
            self.history, self.session_id = [], f"lt-{uuid.uuid4().hex[:12]}"
        self.history.append({"role": "user", "content": text})
        return list(self.history)

    @task
    def chat(self) -> None:
        s = self.scenario
        kind, text = PROMPTS.pick(self.rng, s.hard_share)
        body = {"model": s.model, "max_tokens": s.max_tokens, "stream": s.stream,
                "messages": self._messages(text)}
        if s.stream:
            body["stream_options"] = {"include_usage": True}
        headers = {**self._auth(), "content-type": "application/json"}
        if s.session_turns:
            headers["x-session-id"] = self.session_id
        users = self.environment.runner.user_count if self.environment.runner else 0
        started = time.time()
        name = f"/v1/chat/completions [{'stream' if s.stream else 'json'}, {s.max_tokens} tok]"
        status, tier, ttft_ms, tokens, reply = 0, None, None, 0, ""
        t0 = time.perf_counter()
        with self.client.post("/v1/chat/completions", data=json.dumps(body), headers=headers,
                              stream=s.stream, name=name, catch_response=True) as resp:
            status = resp.status_code or 0
            tier = resp.headers.get("x-tierserve-tier") if resp.headers else None
            if status != 200:
                resp.failure(f"HTTP {status}")
            elif s.stream:
                ttft_ms, tokens, reply = self._read_stream(resp, t0)
            else:
                data = resp.json()
                tokens = (data.get("usage") or {}).get("completion_tokens", 0)
                reply = data["choices"][0]["message"].get("content") or ""
            # Locust times a streamed request to its headers; report the whole stream instead.
            resp.request_meta["response_time"] = (time.perf_counter() - t0) * 1000
        latency_ms = (time.perf_counter() - t0) * 1000
        if s.session_turns and status == 200:
            self.history.append({"role": "assistant", "content": reply[:500]})
        self._report(tier, ttft_ms, tokens, latency_ms)
        if _WRITER is not None:
            _WRITER.write(RequestRecord(t=started, users=users, status=status, latency_ms=latency_ms,
                                        ttft_ms=ttft_ms, tokens=tokens, tier=tier, kind=kind,
                                        max_tokens=s.max_tokens, stream=s.stream,
                                        session_id=self.session_id if s.session_turns else None,
                                        client=self.client_index))

    @staticmethod
    def _read_stream(resp, t0: float) -> tuple[float | None, int, str]:
        ttft_ms, tokens, parts = None, 0, []
        for line in resp.iter_lines(decode_unicode=True):
            if not line or not line.startswith("data: ") or line == "data: [DONE]":
                continue
            event = json.loads(line[6:])
            if "error" in event:
                resp.failure(f"stream error: {event['error'].get('code')}")
                break
            if event.get("usage") and not event.get("choices"):
                tokens = event["usage"].get("completion_tokens", 0)
                continue
            if ttft_ms is None:
                ttft_ms = (time.perf_counter() - t0) * 1000
            for choice in event.get("choices", []):
                parts.append((choice.get("delta") or {}).get("content") or "")
        return ttft_ms, tokens, "".join(parts)

    def _report(self, tier: str | None, ttft_ms: float | None, tokens: int, latency_ms: float) -> None:
        label = tier or "none"
        _fire(self.environment, "TIER", label, 0)
        if ttft_ms is not None:
            _fire(self.environment, "TTFT", label, ttft_ms)
            decode_s = (latency_ms - ttft_ms) / 1000
            if tokens > 1 and decode_s > 0:
                _fire(self.environment, "TOKENS_PER_S", label, (tokens - 1) / decode_s, tokens)


class ScenarioShape(LoadTestShape):
    """Constant users, or the scenario's steps; stops the run at its end."""

    def tick(self) -> tuple[int, float] | None:
        users = SCENARIO.users_at(self.get_run_time())
        return None if users is None else (users, SCENARIO.spawn_rate)
