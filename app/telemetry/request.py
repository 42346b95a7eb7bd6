"""The spans of one request at the ingress: a server span (the request), and its children:
admission, the router call (the router's own span hangs below it), the dispatch to a tier
(the tier's spans hang below it; retries and fallbacks are its attributes), migrations as
events, and the first token as an event at its time."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from app.telemetry.tracing import Tracing, now_ns, trace_id, traceparent


class RequestTrace:
    def __init__(self, tracing: Tracing, headers: Mapping[str, str], endpoint: str, path: str,
                 request_id: str) -> None:
        self._tracing = tracing
        self._start_ns = self._mark_ns = now_ns()
        self.root = tracing.start_from_headers(f"POST {path}", headers, {
            "tierserve.request_id": request_id, "tierserve.endpoint": endpoint,
            "http.request.method": "POST", "url.path": path})
        self.traceparent = traceparent(self.root)
        self.trace_id = trace_id(self.root)
        self._open: dict[str, Any] = {}
        self._ended = False

    @classmethod
    def start(cls, tracing: Tracing, headers: Mapping[str, str], endpoint: str, path: str,
              request_id: str) -> RequestTrace | None:
        return cls(tracing, headers, endpoint, path, request_id) if tracing.on else None

    def mark(self, name: str, **attributes: Any) -> None:
        """A child span from the previous mark (or the start) to now."""
        end = now_ns()
        span = self._tracing.start(name, self.traceparent, attributes=attributes, start_ns=self._mark_ns)
        span.end(end_time=end)
        self._mark_ns = end

    def open(self, name: str, **attributes: Any) -> str | None:
        """Start a child span; its traceparent goes to the deployment called under it."""
        span = self._tracing.start(name, self.traceparent, attributes=attributes)
        self._open[name] = span
        return traceparent(span)

    def close(self, name: str, attributes: Mapping[str, Any] | None = None,
              error: str | None = None) -> None:
        span = self._open.pop(name, None)
        if span is None:
            return
        for key, value in (attributes or {}).items():
            if value is not None:
                span.set_attribute(key, value)
        if error:
            from opentelemetry.trace import Status, StatusCode

            span.set_status(Status(StatusCode.ERROR, error))
        span.end()
        self._mark_ns = now_ns()

    def event(self, name: str, **attributes: Any) -> None:
        self.root.add_event(name, {k: v for k, v in attributes.items() if v is not None})

    def end(self, status: int, tier: str, reason: str, attempts: int, ttft_s: float | None,
            prompt_tokens: int, completion_tokens: int, migrated_to: list[str]) -> None:
        """End the request's span (once; later calls do nothing)."""
        if self._ended:
            return
        self._ended = True
        for name in list(self._open):
            self.close(name, error="ended before it closed")
        root = self.root
        if ttft_s is not None:
            root.add_event("first_token", timestamp=self._start_ns + int(ttft_s * 1e9))
        root.set_attributes({"http.response.status_code": status, "tierserve.tier": tier,
                             "tierserve.route_reason": reason, "tierserve.attempts": attempts,
                             "gen_ai.usage.input_tokens": prompt_tokens,
                             "gen_ai.usage.output_tokens": completion_tokens,
                             "tierserve.migrated_to": migrated_to})
        if ttft_s is not None:
            root.set_attribute("tierserve.ttft_ms", round(ttft_s * 1000, 2))
        if status >= 500:
            from opentelemetry.trace import Status, StatusCode

            root.set_status(Status(StatusCode.ERROR, f"HTTP {status}"))
        root.end()
