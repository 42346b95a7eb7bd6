"""A tier replica's span per call: from the replica taking the call (Serve's queue wait is
the gap after the ingress's dispatch span starts) to its end, with the first output as an
event. Installed over `generate` only when tracing is on, so an untraced tier pays nothing."""

from __future__ import annotations

import os
from collections.abc import AsyncGenerator, Callable
from typing import Any

from app.protocol.internal import TierCall
from app.telemetry.tracing import Tracing, traceparent

Generate = Callable[[TierCall], AsyncGenerator[Any, None]]


def traced(tracing: Tracing, tier: str, generate: Generate) -> Generate:
    async def generate_traced(call: TierCall) -> AsyncGenerator[Any, None]:
        if not call.traceparent:
            async for item in generate(call):
                yield item
            return
        span = tracing.start("tier.generate", call.traceparent, attributes={
            "tierserve.tier": tier, "tierserve.request_id": call.request_id,
            "tierserve.endpoint": call.endpoint, "tierserve.stream": bool(call.body.get("stream")),
            "process.pid": os.getpid()})
        first = True
        try:  # the engine's span (if it traces) hangs below this one
            async for item in generate(call.model_copy(update={"traceparent": traceparent(span)})):
                if first:
                    span.add_event("first_output")
                    first = False
                yield item
        except BaseException as exc:  # cancelled by the client, or failed
            span.record_exception(exc)
            from opentelemetry.trace import Status, StatusCode

            span.set_status(Status(StatusCode.ERROR, type(exc).__name__))
            raise
        finally:
            span.end()

    return generate_traced
