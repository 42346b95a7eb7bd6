"""Relay a tier's SSE stream to the client, and carry it over to another replica when the
tier fails mid-stream (migration).

Migration: the text already streamed goes back to a tier as a partial answer to continue
(chat: a final assistant message with vLLM's `continue_final_message`; completions: the
prompt plus the text), with max_tokens reduced by the tokens already sent. The client
keeps one SSE connection, one `id`, one `[DONE]`; `usage` counts what it received. The
last chunk carries `tierserve.served_by` (OpenAI clients ignore unknown fields).

Semantics: greedy decoding on the same model continues exactly where it stopped; sampled
decoding restarts sampling from the streamed text, and another tier's model continues in
its own words.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any, Protocol

from app.http.errors import OpenAIError
from app.protocol.internal import RouteDecision, TierCall, TierError, TierFinal
from deployments.dispatch import Opened, failure_cause

log = logging.getLogger("ray.serve.tierserve.requests")


class Record(Protocol):
    """The parts of the ingress's request record the relay fills in."""

    start: float
    ttft_s: float | None
    status: int
    prompt_tokens: int
    completion_tokens: int
    tier: str


class Reopen(Protocol):
    async def __call__(self, call: TierCall, decision: RouteDecision,
                       after_death: bool = False) -> Opened: ...


@dataclass
class StreamState:
    """What the client has received so far."""

    stream_id: str | None = None
    text: str = ""
    tokens: int = 0  # content events sent: vLLM streams one token per event
    tokens_before: int = 0  # sent before the current tier took over
    served_by: list[str] = field(default_factory=list)
    done_sent: bool = False


def error_event(message: str, type_: str, code: str) -> bytes:
    """An OpenAI-shaped error as the last SSE event of a stream, then [DONE]."""
    err = {"error": {"message": message, "type": type_, "param": None, "code": code}}
    return f"data: {json.dumps(err)}\n\ndata: [DONE]\n\n".encode()


def _event(chunk: str) -> dict[str, Any] | None:
    payload = chunk[len("data: "):].strip() if chunk.startswith("data: ") else ""
    return json.loads(payload) if payload.startswith("{") else None


def continuation(call: TierCall, streamed_text: str, tokens_sent: int) -> TierCall | None:
    """The request that continues `call`'s answer after `streamed_text`; None when nothing
    is left to generate."""
    body = dict(call.body)
    limit = body.get("max_completion_tokens") or body.get("max_tokens") or call.default_max_tokens
    left = None if limit is None else limit - tokens_sent
    if left is not None and left < 1:
        return None
    body.pop("max_completion_tokens", None)
    if left is not None:
        body["max_tokens"] = left
    if call.endpoint == "chat":
        body["messages"] = [*body["messages"], {"role": "assistant", "content": streamed_text}]
        body["continue_final_message"], body["add_generation_prompt"] = True, False
    else:
        prompt = body["prompt"] if isinstance(body["prompt"], str) else body["prompt"][0]
        body["prompt"] = prompt + streamed_text
    return call.model_copy(update={"body": body, "default_max_tokens": None})


class StreamRelay:
    """Relays SSE chunks; reads the usage chunk Tierserve always asks for; migrates."""

    def __init__(self, opened: Opened, call: TierCall, record: Record, client_wants_usage: bool,
                 idle_timeout_s: float, reopen: Reopen | None = None,
                 fallbacks: list[str] | None = None, max_migrations: int = 1,
                 on_migrate: Any = None, on_replica_death: Any = None) -> None:
        self._opened = opened
        self._call = call
        self._record = record
        self._wants_usage = client_wants_usage
        self._idle_timeout_s = idle_timeout_s
        self._reopen = reopen
        self._fallbacks = fallbacks or []
        self._migrations_left = max_migrations
        self._on_migrate = on_migrate
        self._on_replica_death = on_replica_death
        self.state = StreamState(served_by=[opened.tier])
        self._sent: list[str] = []  # the first tier's chunks, as sent

    # -- chunks ---------------------------------------------------------------------
    def _rewrite(self, chunk: str) -> str | None:
        """Track what the client gets; None drops the chunk. Chunks are kept as they are
        (parsed only if a migration needs them); after one, events are re-serialised to
        keep the first tier's id."""
        if chunk.startswith("data: [DONE]"):
            self.state.done_sent = True
            return chunk
        if '"choices":[]' in chunk and '"usage"' in chunk:
            return self._usage(chunk)
        if len(self.state.served_by) == 1:
            self._sent.append(chunk)
            return chunk
        event = _event(chunk)
        if event is None or "error" in event:
            return chunk
        self._count(event)
        event["id"] = self.state.stream_id
        if any(c.get("finish_reason") for c in event.get("choices") or []):
            event["tierserve"] = {"served_by": self.state.served_by}
        return f"data: {json.dumps(event)}\n\n"

    def _usage(self, chunk: str) -> str | None:
        event = _event(chunk) or {}
        usage = event.get("usage") or {}
        before = self.state.tokens_before
        record = self._record
        record.completion_tokens = before + usage.get("completion_tokens", 0)
        # a continuation's prompt holds the partial answer: count the original prompt only
        record.prompt_tokens = max(0, usage.get("prompt_tokens", 0) - before)
        if not self._wants_usage:
            return None
        if not before:
            return chunk
        event["usage"] = {**usage, "prompt_tokens": record.prompt_tokens,
                          "completion_tokens": record.completion_tokens,
                          "total_tokens": record.prompt_tokens + record.completion_tokens}
        event["id"] = self.state.stream_id
        event["tierserve"] = {"served_by": self.state.served_by}
        return f"data: {json.dumps(event)}\n\n"

    def _count(self, event: dict[str, Any]) -> None:
        self.state.stream_id = self.state.stream_id or event.get("id")
        for choice in event.get("choices") or []:
            text = (choice.get("delta") or {}).get("content") or choice.get("text") or ""
            if text:
                self.state.text += text
                self.state.tokens += 1

    def _catch_up(self) -> None:
        """Read what the first tier sent, once, when a migration needs it."""
        for chunk in self._sent:
            if (event := _event(chunk)) is not None and "error" not in event:
                self._count(event)
        self._sent.clear()

    def _render(self, batch: list[str]) -> bytes:
        return "".join(c for c in (self._rewrite(c) for c in batch) if c is not None).encode()

    # -- the stream -------------------------------------------------------------------
    async def __aiter__(self) -> AsyncIterator[bytes]:
        batch = self._opened.first
        try:
            while True:
                try:
                    while True:
                        if self._record.ttft_s is None:
                            self._record.ttft_s = time.perf_counter() - self._record.start
                        out = self._render(batch)
                        if out:
                            yield out
                        batch = await asyncio.wait_for(self._opened.rest.__anext__(),
                                                       self._idle_timeout_s)
                except StopAsyncIteration:
                    return
                except asyncio.CancelledError:
                    self._record.status = 499  # client went away: stop the engine's work too
                    raise
                except Exception as exc:
                    # The tier failed mid-stream, or went silent (a stuck engine, or a replica on
                    # a node that died and that Ray has not declared dead yet): carry on elsewhere.
                    reopened = await self._migrate(exc)
                    if reopened is None:
                        yield self._failed(exc)
                        return
                    if isinstance(reopened, bytes):  # nothing left to generate: end cleanly
                        yield reopened
                        return
                    self._opened.rest.cancel()
                    self._opened = reopened
                    batch = reopened.first
        finally:
            self._opened.rest.cancel()

    def _failed(self, exc: Exception) -> bytes:
        """The stream's last event when it could not be carried on."""
        if isinstance(exc, TimeoutError):
            self._record.status = 504
            return error_event(f"the tier sent nothing for {self._idle_timeout_s:.0f} s",
                               "timeout_error", "stream_idle_timeout")
        self._record.status = 500
        return error_event(f"stream interrupted: {type(exc).__name__}", "server_error",
                           "stream_interrupted")

    async def _migrate(self, exc: Exception) -> Opened | bytes | None:
        if self._reopen is None or self._migrations_left < 1 or self.state.done_sent:
            return None
        self._migrations_left -= 1
        self._catch_up()
        nxt = continuation(self._call, self.state.text, self.state.tokens)
        from_tier = self._opened.tier
        if nxt is None:
            return self._finish_event("length")
        decision = RouteDecision(tier=from_tier, reason="migration",
                                 fallbacks=[t for t in self._fallbacks if t != from_tier])
        died = failure_cause(exc) == "replica_died"
        if died and self._on_replica_death is not None:
            self._on_replica_death(from_tier)
        try:
            opened = await self._reopen(nxt, decision, after_death=died)
        except OpenAIError as err:
            log.warning(json.dumps({"event": "migration_failed", "from_tier": from_tier,
                                    "cause": type(exc).__name__, "error": err.message}))
            return None
        if isinstance(opened.first, (TierError, TierFinal)):
            opened.rest.cancel()
            detail = getattr(opened.first, "message", "a whole answer instead of a stream")
            log.warning(json.dumps({"event": "migration_failed", "from_tier": from_tier,
                                    "to_tier": opened.tier, "error": detail}))
            return None
        log.warning(json.dumps({"event": "migration", "from_tier": from_tier, "to_tier": opened.tier,
                                "tokens_sent": self.state.tokens, "cause": type(exc).__name__}))
        self.state.tokens_before = self.state.tokens
        self.state.served_by.append(opened.tier)
        self._record.tier = opened.tier
        if self._on_migrate is not None:
            self._on_migrate(from_tier, opened.tier)
        return opened

    def _finish_event(self, reason: str) -> bytes:
        """The stream's end when the failure came after its last token."""
        event = {"id": self.state.stream_id, "object": "chat.completion.chunk"
                 if self._call.endpoint == "chat" else "text_completion",
                 "choices": [{"index": 0, "delta": {}, "finish_reason": reason}],
                 "tierserve": {"served_by": self.state.served_by}}
        self._record.completion_tokens = self.state.tokens
        return f"data: {json.dumps(event)}\n\ndata: [DONE]\n\n".encode()
