"""The tier's request handling around the engine: counting a long prompt off the event loop,
and non-streaming answers serialized as vLLM's own server writes them."""

from __future__ import annotations

import asyncio
import random
import threading
from pathlib import Path
from types import SimpleNamespace

import pytest

from app.config import load_config
from app.protocol.internal import TierCall, TierError
from deployments.tier import TierServer, _to_final

TOKENIZER = Path(__file__).resolve().parents[2] / "models" / "tiny-fast"


class _RecordingTokenizer:
    """The real tiny tokenizer, noting which threads it ran on."""

    def __init__(self, tokenizer) -> None:
        self._tokenizer = tokenizer
        self.threads: set[int] = set()

    def apply_chat_template(self, *args, **kwargs):
        self.threads.add(threading.get_ident())
        return self._tokenizer.apply_chat_template(*args, **kwargs)

    def encode(self, *args, **kwargs):
        self.threads.add(threading.get_ident())
        return self._tokenizer.encode(*args, **kwargs)


def _server_with_tokenizer() -> tuple[TierServer, _RecordingTokenizer]:
    """A TierServer without an engine: only the tokenizer, the real tiny model's."""
    if not (TOKENIZER / "tokenizer.json").exists():
        pytest.skip("tiny models missing: run `make setup`")
    from transformers import AutoTokenizer

    tokenizer = _RecordingTokenizer(AutoTokenizer.from_pretrained(TOKENIZER))
    server = TierServer.__new__(TierServer)
    server._tier = load_config("local-cpu").tier("fast")
    server.engine = SimpleNamespace(_engine_client=SimpleNamespace(get_tokenizer=lambda: tokenizer))
    return server, tokenizer


def _long_chat(chars: int) -> TierCall:
    rng = random.Random(3)
    text = " ".join(f"{rng.choice(['alpha', 'beta', 'gamma', 'delta'])}{rng.randint(0, 999)}"
                    for _ in range(chars // 6))[:chars]
    return TierCall(request_id="long", endpoint="chat",
                    body={"messages": [{"role": "user", "content": text}], "max_tokens": 16})


@pytest.mark.filterwarnings("ignore:coroutine .LLMServer.__del__. was never awaited")
def test_a_100k_character_prompt_is_counted_without_stalling_the_event_loop() -> None:
    server, tokenizer = _server_with_tokenizer()
    call = _long_chat(100_000)

    async def run() -> tuple[object, int]:
        ticks = 0
        stop = asyncio.Event()

        async def tick() -> None:  # another stream of the replica, wanting the loop every 5 ms
            nonlocal ticks
            while not stop.is_set():
                await asyncio.sleep(0.005)
                ticks += 1

        ticker = asyncio.create_task(tick())
        await asyncio.sleep(0.02)
        before = ticks
        fitted = await server._fit_context(call)
        during = ticks - before
        stop.set()
        await ticker
        return fitted, during

    fitted, ticks_during = asyncio.run(run())
    assert isinstance(fitted, TierError) and fitted.code == 400  # 100k chars overflow 2,048 tokens
    assert "maximum context length" in fitted.message
    assert threading.main_thread().ident not in tokenizer.threads  # the loop's thread never tokenized
    # Counting 100k characters takes ~0.3 s here; the other stream kept running meanwhile
    # (on the loop it would have ticked at most once).
    assert ticks_during >= 5, ticks_during


def test_a_non_streaming_answer_keeps_the_null_fields_openai_clients_expect() -> None:
    from ray.llm._internal.serve.core.configs.openai_api_models import (
        ChatCompletionResponse,
        CompletionResponse,
    )

    usage = {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2}
    chat = _to_final(ChatCompletionResponse.model_validate({
        "id": "c", "created": 1, "model": "m", "usage": usage,
        "choices": [{"index": 0, "message": {"role": "assistant", "content": "hi"},
                     "finish_reason": "stop"}]}))
    assert chat.body["system_fingerprint"] is None and "system_fingerprint" in chat.body
    choice = chat.body["choices"][0]
    assert "logprobs" in choice and choice["logprobs"] is None
    assert "refusal" in choice["message"] and choice["message"]["refusal"] is None
    text = _to_final(CompletionResponse.model_validate({
        "id": "t", "created": 1, "model": "m", "usage": usage,
        "choices": [{"index": 0, "text": "hi", "finish_reason": "stop"}]}))
    assert "logprobs" in text.body["choices"][0] and "system_fingerprint" in text.body
