"""OpenTelemetry traces of requests, exported over OTLP/HTTP; nothing at all when off.

Each process (ingress, router and tier replicas) makes its own TracerProvider (never the
global one: Ray and vLLM may set theirs). Context crosses Ray Serve handle calls as a W3C
`traceparent` string in the internal request models; a client's `traceparent` is honoured
and the ingress's span is returned in the response's `traceparent` header.

Spans are started and ended explicitly (no context attach): the ingress's request spans
outlive the handler that opened them (streams end in the response body's iterator).
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

from app.config.operations import TracingConfig

_providers: dict[tuple[str, str, float], Any] = {}


class Tracing:
    """This process's tracer, or nothing: with `tracer` None every call returns at once."""

    def __init__(self, tracer: Any = None) -> None:
        self.tracer = tracer

    @property
    def on(self) -> bool:
        return self.tracer is not None

    def start(self, name: str, parent: str | None = None, *, server: bool = False,
              attributes: Mapping[str, Any] | None = None, start_ns: int | None = None) -> Any:
        """A started span, child of the W3C `parent` traceparent (a new trace without one)."""
        if self.tracer is None:
            return None
        from opentelemetry.trace import SpanKind

        return self.tracer.start_span(name, context=context_of(parent), attributes=_clean(attributes),
                                      kind=SpanKind.SERVER if server else SpanKind.INTERNAL,
                                      start_time=start_ns)

    def start_from_headers(self, name: str, headers: Mapping[str, str],
                           attributes: Mapping[str, Any] | None = None) -> Any:
        """The server span of an HTTP request, child of the client's traceparent if it sent one."""
        if self.tracer is None:
            return None
        from opentelemetry.trace import SpanKind
        from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

        carrier = {k: headers[k] for k in ("traceparent", "tracestate") if k in headers}
        ctx = TraceContextTextMapPropagator().extract(carrier) if carrier else None
        return self.tracer.start_span(name, context=ctx, kind=SpanKind.SERVER,
                                      attributes=_clean(attributes))


def setup(cfg: TracingConfig, component: str) -> Tracing:
    """The tracer of one Tierserve process; off (and free) unless an OTLP endpoint is set."""
    endpoint = cfg.resolved_endpoint()
    if not endpoint:
        return Tracing(None)
    key = (endpoint, cfg.service_name, cfg.sample_ratio)
    if key not in _providers:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor
        from opentelemetry.sdk.trace.sampling import ParentBased, TraceIdRatioBased

        provider = TracerProvider(resource=Resource.create({"service.name": cfg.service_name}),
                                  sampler=ParentBased(TraceIdRatioBased(cfg.sample_ratio)))
        # A short delay: traces reach the backend within a second, in batches.
        provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(endpoint=endpoint, timeout=5),
                                                       schedule_delay_millis=500))
        _providers[key] = provider
    return Tracing(_providers[key].get_tracer("tierserve", attributes={"tierserve.component": component}))


def context_of(traceparent: str | None) -> Any:
    if not traceparent:
        return None
    from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

    return TraceContextTextMapPropagator().extract({"traceparent": traceparent})


def traceparent(span: Any) -> str | None:
    """The W3C traceparent naming `span` as the parent."""
    if span is None:
        return None
    ctx = span.get_span_context()
    if not ctx.is_valid:
        return None
    return f"00-{ctx.trace_id:032x}-{ctx.span_id:016x}-{int(ctx.trace_flags):02x}"


def trace_id(span: Any) -> str | None:
    if span is None or not span.get_span_context().is_valid:
        return None
    return f"{span.get_span_context().trace_id:032x}"


def now_ns() -> int:
    return time.time_ns()


def _clean(attributes: Mapping[str, Any] | None) -> dict[str, Any] | None:
    """OTel attribute values are str, bool, int, float or lists of one of them; None is dropped."""
    if not attributes:
        return None
    return {k: v for k, v in attributes.items() if v is not None}
