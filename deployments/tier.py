"""One tier: ray.serve.llm's LLMServer, wrapped where Tierserve differs.

- `generate` takes a small `TierCall` (the OpenAI JSON) so the ingress never
  imports vLLM, and yields plain SSE strings rather than pydantic objects.
- Streams send the first chunk at once and coalesce the rest for a few ms,
  longer as more streams share the replica: Ray Serve LLM's fixed 50 ms
  batching costs time to first token, no batching costs throughput
  (shared/CPU-VLLM.md).
- Warm-up: the replica reports ready only after one real generation.
- CPU: the engine's processes are pinned to the configured cores, so vLLM's
  busy-spinning EngineCore does not starve the core that serves HTTP.
- Remote model sources (s3://, Hugging Face ids) are fetched into the node's cache
  before the engine starts (app/models/sources.py), so readiness and the warm-up
  still gate traffic; vLLM is handed the local path.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import logging.handlers
import os
import time
from collections.abc import AsyncGenerator, Callable, Iterator
from typing import Any

import psutil
from ray.llm._internal.serve.core.protocol import RawRequestInfo
from ray.serve.llm import LLMServer

from app import engine_shm
from app.config.operations import TracingConfig
from app.config.schema import TierConfig
from app.models.progress import LogProgress
from app.models.sources import Resolved, SourceKind, kind_of
from app.models.sources import resolve as resolve_model
from app.protocol.internal import TierCall, TierError, TierFinal
from app.telemetry.tier import traced
from app.telemetry.tracing import setup as setup_tracing
from deployments.autoscaling_policy import WAITING_METRIC, WaitingGauge

logger = logging.getLogger("ray.serve.tierserve.tier")

# Tokens a chat template may add around the messages (role markers, default system text).
_TEMPLATE_MARGIN = 256


def pin_engine_processes(cores: list[int]) -> list[int]:
    """Pin this replica's child processes (vLLM EngineCore and workers) to `cores`."""
    pinned = []
    for proc in psutil.Process(os.getpid()).children(recursive=True):
        try:
            proc.cpu_affinity(cores)
            for thread in proc.threads():  # threads already started keep their own mask
                os.sched_setaffinity(thread.id, cores)
            pinned.append(proc.pid)
        except (psutil.Error, OSError):
            continue
    return pinned


@contextlib.contextmanager
def serve_log_kept() -> Iterator[None]:
    """Keep this replica's Serve log file while vLLM starts its engine.

    vLLM configures logging then (`logging.config.dictConfig`), which closes every handler in
    the process; Serve's replica log is a MemoryHandler whose close() drops its file target,
    so nothing the replica logged afterwards (access lines, the tier's own lines) was written.
    The file handler reopens on its next record.
    """
    held = [(h, h.target) for h in logging.getLogger("ray.serve").handlers
            if isinstance(h, logging.handlers.MemoryHandler)]
    try:
        yield
    finally:
        for handler, target in held:
            if handler.target is None and target is not None:
                handler.setTarget(target)


async def coalesce(stream: AsyncGenerator[Any, None], window_s: Callable[[], float] | float
                   ) -> AsyncGenerator[list[Any], None]:
    """Yield the first item alone, then what arrived during each window.

    The cost is per batch, not per item: a reader task appends to a list and the
    consumer sleeps out the window (ending early when the stream does). `window_s`
    may be a callable, read once per batch, so the window can follow the load.
    The reader is cancelled with the consumer, so a client's disconnect aborts
    the engine request.
    """
    window = window_s if callable(window_s) else (lambda: window_s)
    pending: list[Any] = []
    arrived = asyncio.Event()
    finished = asyncio.Event()

    async def read() -> None:
        try:
            async for item in stream:
                pending.append(item)
                arrived.set()
        except Exception as exc:  # surfaced to the consumer below
            pending.append(exc)
        finally:
            finished.set()
            arrived.set()

    reader = asyncio.create_task(read())
    try:
        first = True
        while True:
            await arrived.wait()
            if not first and not finished.is_set() and (wait := window()) > 0:
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(finished.wait(), wait)
            first = False
            arrived.clear()
            items = pending[:]
            pending.clear()
            error = next((i for i in items if isinstance(i, Exception)), None)
            if error is not None:
                items = items[: items.index(error)]
            if items:
                yield items
            if error is not None:
                raise error
            if finished.is_set() and not pending:
                return
    finally:
        reader.cancel()


def load_scaled_window(base_s: float, max_s: float, streams: Callable[[], int],
                       streams_per_base: int = 8) -> Callable[[], float]:
    """A coalescing window that grows with the streams this replica serves.

    Under load each message costs the shared front-end core more than its tokens
    are worth; a longer window then buys throughput, while a lone stream keeps
    the short one.
    """
    def window() -> float:
        return min(max_s, base_s * max(1.0, streams() / streams_per_base))
    return window


class TierServer(LLMServer):
    """An LLMServer replica of one tier."""

    # Serve awaits an async __init__; mypy's rule that __init__ returns None does not know that.
    async def __init__(  # type: ignore[misc]
            self, llm_config, *, tier: TierConfig, tracing: TracingConfig | None = None) -> None:
        self._tier = tier
        self._streams = 0
        self._waiting = WaitingGauge()
        self._window = load_scaled_window(tier.stream_coalesce_ms / 1000,
                                          tier.stream_coalesce_max_ms / 1000, lambda: self._streams)
        self._ready = False
        started = time.monotonic()
        llm_config = await self._fetch_model(llm_config)
        fetched = time.monotonic()
        shm_before = engine_shm.shm_segments()
        with serve_log_kept():
            await super().__init__(llm_config)
        engine_up = time.monotonic()
        if tier.resources.cpu_cores:
            pinned = pin_engine_processes(tier.resources.cpu_cores)
            logger.info("tier %s: pinned engine pids %s to cores %s",
                        tier.name, pinned, tier.resources.cpu_cores)
        warm_start = time.monotonic()
        await self._warm_up()
        # Where a cold start goes (`tierserve bench cold-start` reads this line).
        logger.info("tier %s: replica ready in %.2fs (model %.2fs, engine %.2fs, warm-up %.2fs)",
                    tier.name, time.monotonic() - started, fetched - started, engine_up - fetched,
                    time.monotonic() - warm_start)
        tracer = setup_tracing(tracing or TracingConfig(), "tier")
        if tracer.on:  # a span per call; untraced replicas keep the plain method
            self.generate = traced(tracer, tier.name, self.generate)  # type: ignore[method-assign,assignment]
        # So the stack's `down` can clean up after this engine even if this replica is killed.
        engine_shm.record_engine(tier.name, psutil.Process().children(recursive=True),
                                 engine_shm.shm_segments() - shm_before)

    async def _fetch_model(self, llm_config):
        """A remote source is pulled (or found in the node's cache) before the engine starts;
        the returned config points vLLM at the local copy. Local paths pass unchanged."""
        from deployments.metrics import ModelMetrics

        tier, source = self._tier.name, self._tier.model_source
        kind = kind_of(source)
        if kind is SourceKind.LOCAL:
            return llm_config
        metrics = ModelMetrics()
        tags = {"tier": tier}
        progress = LogProgress(logger, every_s=5, on_update=lambda done, total: metrics.progress.set(
            done / total if total else 1.0, tags=tags))
        logger.info("tier %s: fetching model %s (%s)", tier, source, kind.value)
        got: Resolved = await asyncio.to_thread(resolve_model, source, progress=progress)
        outcome = "cache_hit" if got.cache_hit else "download"
        metrics.fetch_seconds.observe(got.seconds, tags={**tags, "source": kind.value, "outcome": outcome})
        if got.fetched_bytes:
            metrics.fetched_bytes.inc(got.fetched_bytes, tags={**tags, "source": kind.value})
        metrics.progress.set(1.0, tags=tags)
        if got.cache_hit:
            logger.info("tier %s: model %s version %s from the cache in %.3fs: %s",
                        tier, source, got.version, got.seconds, got.path)
        else:
            logger.info("tier %s: model %s version %s downloaded and verified: %.1f MB in %.2fs "
                        "(%.1f MB/s, %.1f MB resumed, %.1fs waiting for another download): %s",
                        tier, source, got.version, got.fetched_bytes / 1e6, got.seconds,
                        got.mb_per_s, got.resumed_bytes / 1e6, got.lock_wait_s, got.path)
        config = llm_config.model_copy(deep=True)
        config.model_loading_config.model_source = got.path
        return config

    async def _warm_up(self) -> None:
        call = TierCall(request_id=f"warmup-{os.getpid()}", endpoint="completion",
                        body={"model": self._tier.served_model_name, "prompt": "warm up",
                              "max_tokens": 1})
        async for item in self.generate(call):
            if isinstance(item, TierError):
                raise RuntimeError(f"tier {self._tier.name} warm-up failed: {item.message}")
        self._ready = True

    async def ready(self) -> bool:
        return self._ready

    @property
    def _vllm(self) -> Any:
        """The engine as vLLM's: Ray types it as the abstract LLMEngine, which has no
        `_engine_client` and whose `chat`/`completions` read as coroutines, not streams."""
        return self.engine

    async def num_unfinished_requests(self) -> int:
        """Requests the engine still holds; lets tests prove a disconnect aborted one."""
        return self._vllm._engine_client.get_num_unfinished_requests()

    def _engine_stream(self, call: TierCall) -> AsyncGenerator[Any, None]:
        from ray.llm._internal.serve.core.configs.openai_api_models import (
            ChatCompletionRequest,
            CompletionRequest,
        )

        body = {**call.body, "model": self._tier.served_model_name, "request_id": call.request_id}
        headers = {"x-request-id": call.request_id}
        if call.traceparent:  # vLLM's own span (engine tracing on) joins the request's trace
            headers["traceparent"] = call.traceparent
        raw = RawRequestInfo(headers=headers)
        if call.endpoint == "chat":
            return self._vllm.chat(ChatCompletionRequest(**body), raw)
        return self._vllm.completions(CompletionRequest(**body), raw)

    def _prompt_tokens(self, call: TierCall) -> int:
        """Count prompt tokens with the engine's own tokenizer and chat template."""
        tokenizer = self._vllm._engine_client.get_tokenizer()
        if call.endpoint == "chat":
            messages = [{**m, "content": _text(m.get("content"))} for m in call.body["messages"]]
            text = tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
            return len(tokenizer.encode(text, add_special_tokens=False))
        prompt = call.body["prompt"]
        return len(tokenizer.encode(prompt if isinstance(prompt, str) else prompt[0]))

    async def _fit_context(self, call: TierCall) -> TierCall | TierError:
        """OpenAI rejects prompt + max_tokens beyond the context (vLLM 0.32 silently clamps);
        a request without max_tokens gets the server's default, cut to the room the prompt
        leaves, so no client gets a full-context generation by leaving it out."""
        body = call.body
        requested = body.get("max_completion_tokens") or body.get("max_tokens")
        max_tokens = requested or call.default_max_tokens
        if not max_tokens:
            return call
        limit = self._tier.max_model_len
        # Byte-level tokenizers never make more tokens than bytes: short prompts skip tokenizing.
        upper = len(json.dumps(body.get("messages") or body.get("prompt")).encode())
        if upper + _TEMPLATE_MARGIN + max_tokens <= limit:
            return call if requested else _with_max_tokens(call, max_tokens)
        # In a thread: a long prompt's template and tokenizing take tens of ms to seconds,
        # which on the event loop would stall every other stream of this replica.
        prompt_tokens = await asyncio.to_thread(self._prompt_tokens, call)
        if not requested and prompt_tokens < limit:
            return _with_max_tokens(call, min(max_tokens, limit - prompt_tokens))
        if prompt_tokens + max_tokens <= limit:
            return call
        return TierError(
            message=(f"This model's maximum context length is {limit} tokens. However, you requested "
                     f"{prompt_tokens + max_tokens} tokens ({prompt_tokens} in the prompt, "
                     f"{max_tokens} for the completion). Reduce the prompt or max_tokens."),
            type="invalid_request_error", code=400, param="max_tokens")

    async def record_autoscaling_stats(self) -> dict[str, float]:
        """Serve's custom autoscaling metrics hook: read by the `queue_depth` policy."""
        return {WAITING_METRIC: self._waiting.read()}

    async def generate(self, call: TierCall) -> AsyncGenerator[Any, None]:
        """Yield `TierError`, `TierFinal`, or lists of SSE strings (streaming). Until its first
        item the request counts as waiting (deployments/autoscaling_policy.py)."""
        self._waiting.start()
        waiting = True
        try:
            # aclosing: a client that goes away closes the engine stream now, not at GC.
            async with contextlib.aclosing(self._generate(call)) as items:
                async for item in items:
                    if waiting:
                        waiting = False
                        self._waiting.first_output()
                    yield item
        finally:
            if waiting:
                self._waiting.first_output()

    async def _generate(self, call: TierCall) -> AsyncGenerator[Any, None]:
        fitted = await self._fit_context(call)
        if isinstance(fitted, TierError):
            yield fitted
            return
        call = fitted
        try:
            stream = self._engine_stream(call)
        except ValueError as exc:  # pydantic validation of vLLM's request model
            yield TierError(message=str(exc), type="invalid_request_error", code=400)
            return
        if not call.body.get("stream"):
            async for out in stream:
                yield _to_final(out)
            return
        self._streams += 1
        try:
            async for batch in coalesce(stream, self._window):
                if len(batch) == 1 and not isinstance(batch[0], str):
                    yield _to_final(batch[0])  # vLLM rejected the request before streaming
                    return
                yield batch
        finally:
            self._streams -= 1


def _with_max_tokens(call: TierCall, max_tokens: int) -> TierCall:
    return call.model_copy(update={"body": {**call.body, "max_tokens": max_tokens}})


def _text(content: Any) -> str:
    if isinstance(content, list):
        return "\n".join(part.get("text") or "" for part in content if isinstance(part, dict))
    return content or ""


def _to_final(out: Any) -> TierError | TierFinal:
    data = out.model_dump()
    if "error" in data and isinstance(data["error"], dict):
        err = data["error"]
        return TierError(message=err.get("message", ""), type=err.get("type", "server_error"),
                         code=int(err.get("code") or 500), param=err.get("param"))
    # As vLLM's own server answers: every field, nulls included (`system_fingerprint`,
    # `logprobs`, `refusal`...), which OpenAI's clients expect to find present.
    return TierFinal(body=data)
