"""Stream relay and mid-stream migration logic (deployments/relay.py), without Ray."""

from __future__ import annotations

import asyncio
import json
import time

from app.protocol.internal import RouteDecision, TierCall
from deployments.dispatch import Opened
from deployments.relay import StreamRelay, continuation


def _dumps(obj) -> str:  # compact, as vLLM writes its SSE events
    return json.dumps(obj, separators=(",", ":"))


def _chunk(rid: str, text: str, finish: str | None = None) -> str:
    return "data: " + _dumps({"id": rid, "object": "chat.completion.chunk", "choices": [
        {"index": 0, "delta": {"content": text}, "finish_reason": finish}]}) + "\n\n"


def _usage(rid: str, prompt: int, completion: int) -> str:
    return "data: " + _dumps({"id": rid, "choices": [], "usage": {
        "prompt_tokens": prompt, "completion_tokens": completion,
        "total_tokens": prompt + completion}}) + "\n\n"


class _Rest:
    def __init__(self, batches, fail: Exception | None = None):
        self._batches, self._fail = list(batches), fail
        self.cancelled = False

    async def __anext__(self):
        if self._batches:
            return self._batches.pop(0)
        if self._fail is not None:
            raise self._fail
        raise StopAsyncIteration

    def cancel(self):
        self.cancelled = True


class _Record:
    def __init__(self):
        self.start, self.ttft_s, self.status = time.perf_counter(), None, 200
        self.prompt_tokens = self.completion_tokens = 0
        self.tier = "fast"


CALL = TierCall(request_id="r", endpoint="chat", body={
    "model": "auto", "stream": True, "max_tokens": 5, "messages": [{"role": "user", "content": "hi"}]})


def test_a_continuation_carries_the_partial_answer_and_what_is_left() -> None:
    nxt = continuation(CALL, "a b", 2)
    assert nxt.body["messages"][-1] == {"role": "assistant", "content": "a b"}
    assert nxt.body["continue_final_message"] is True and nxt.body["add_generation_prompt"] is False
    assert nxt.body["max_tokens"] == 3 and CALL.body["max_tokens"] == 5  # the original is untouched
    completion = TierCall(request_id="r", endpoint="completion", body={"prompt": "x", "max_tokens": 4})
    assert continuation(completion, " y", 1).body == {"prompt": "x y", "max_tokens": 3}
    assert continuation(CALL, "a b c d e", 5) is None


def _relay(first_rest: _Rest, reopened: list[Opened], wants_usage: bool = True):
    calls: list[tuple[TierCall, RouteDecision]] = []

    async def reopen(call, decision, after_death=False):
        calls.append((call, decision))
        return reopened.pop(0)

    record = _Record()
    opened = Opened("fast", "score", [_chunk("A", "a ")], first_rest, 1)
    relay = StreamRelay(opened, CALL, record, wants_usage, 5, reopen=reopen, fallbacks=["reasoning"])

    async def collect():
        return b"".join([c async for c in relay]).decode()

    return asyncio.run(collect()), record, calls


def _events(raw: str) -> list:
    return [b[len("data: "):] if b.startswith("data: [") else json.loads(b[len("data: "):])
            for b in raw.split("\n\n") if b.strip()]


def test_a_stream_that_fails_mid_way_continues_on_another_replica() -> None:
    second = Opened("fast", "migration", [_chunk("B", "c ")],
                    _Rest([[_chunk("B", "d ", "length")], [_usage("B", 9, 2), "data: [DONE]\n\n"]]), 1)
    raw, record, calls = _relay(_Rest([[_chunk("A", "b ")]], fail=RuntimeError("replica died")), [second])
    events = _events(raw)
    chunks = [e for e in events if isinstance(e, dict)]
    assert "".join(c["choices"][0]["delta"]["content"] for c in chunks if c["choices"]) == "a b c d "
    assert {c["id"] for c in chunks} == {"A"} and events[-1] == "[DONE]"
    assert chunks[-1]["usage"]["completion_tokens"] == 4 and chunks[-1]["usage"]["prompt_tokens"] == 7
    assert (record.completion_tokens, record.prompt_tokens, record.status) == (4, 7, 200)
    call, decision = calls[0]
    assert call.body["messages"][-1]["content"] == "a b " and call.body["max_tokens"] == 3
    assert (decision.tier, decision.fallbacks) == ("fast", ["reasoning"])


def test_without_a_tier_to_continue_on_the_stream_ends_with_a_clean_error() -> None:
    async def nowhere(call, decision, after_death=False):
        from app.http.errors import OpenAIError
        raise OpenAIError(503, "no tier", code="tier_unavailable")

    record = _Record()
    opened = Opened("fast", "score", [_chunk("A", "a ")], _Rest([], fail=RuntimeError("x")), 1)
    relay = StreamRelay(opened, CALL, record, True, 5, reopen=nowhere)

    async def collect():
        return b"".join([c async for c in relay]).decode()

    events = _events(asyncio.run(collect()))
    assert events[-2]["error"]["code"] == "stream_interrupted" and events[-1] == "[DONE]"
    assert record.status == 500


def test_an_unmigrated_stream_passes_chunks_through_untouched() -> None:
    rest = _Rest([[_chunk("A", "b ", "stop")], [_usage("A", 4, 2), "data: [DONE]\n\n"]])
    raw, record, calls = _relay(rest, [], wants_usage=False)
    assert raw == _chunk("A", "a ") + _chunk("A", "b ", "stop") + "data: [DONE]\n\n"  # usage dropped
    assert (record.prompt_tokens, record.completion_tokens) == (4, 2) and calls == []


def test_a_stream_that_goes_silent_continues_on_another_replica() -> None:
    second = Opened("fast", "migration", [_chunk("B", "b ", "length")],
                    _Rest([[_usage("B", 5, 1), "data: [DONE]\n\n"]]), 1)
    raw, record, calls = _relay(_Rest([], fail=TimeoutError()), [second])
    events = _events(raw)
    chunks = [e for e in events if isinstance(e, dict) and e["choices"]]
    text = "".join(c["choices"][0]["delta"]["content"] for c in chunks)
    assert text == "a b " and events[-1] == "[DONE]" and record.status == 200
    assert calls[0][0].body["messages"][-1]["content"] == "a "


def test_a_silent_stream_with_nowhere_to_go_ends_with_an_idle_timeout_event() -> None:
    record = _Record()
    opened = Opened("fast", "score", [_chunk("A", "a ")], _Rest([], fail=TimeoutError()), 1)
    relay = StreamRelay(opened, CALL, record, True, 5, reopen=None)

    async def collect():
        return b"".join([c async for c in relay]).decode()

    events = _events(asyncio.run(collect()))
    assert events[-2]["error"]["code"] == "stream_idle_timeout" and events[-1] == "[DONE]"
    assert events[-2]["error"]["type"] == "timeout_error" and record.status == 504
