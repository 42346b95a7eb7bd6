"""Config of the operator's surfaces: the web console and OpenTelemetry tracing."""

from __future__ import annotations

import os
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ConsoleConfig(_Strict):
    """The web console at /console (app/console)."""

    # off: not served. loopback: served to loopback peers only (the local stack binds Serve's
    # HTTP to 127.0.0.1; behind a same-node HAProxy the peer is HAProxy). on: served to anyone
    # holding an admin key. An admin key is required whenever one is configured; with none,
    # only `loopback` serves the console, open, like the local API.
    mode: Literal["off", "loopback", "on"] = "loopback"
    # Routing decisions each ingress replica keeps for the console (a bounded ring).
    recent_decisions: int = Field(200, ge=0, le=10_000)


class TracingConfig(_Strict):
    """OpenTelemetry traces over OTLP/HTTP (app/telemetry). Off unless an endpoint is set."""

    endpoint_env: str = Field("TIERSERVE_OTLP_ENDPOINT", description="env var with the OTLP endpoint")
    # OTLP/HTTP traces URL, e.g. http://tempo:4318/v1/traces; the env var wins when set.
    endpoint: str | None = None
    service_name: str = "tierserve"
    sample_ratio: float = Field(1.0, ge=0, le=1)  # of traces started here (a client's flag wins)
    # The console links each decision's trace here, e.g. Jaeger's http://jaeger:16686/trace/{trace_id}
    # or Grafana's explore URL for Tempo; {trace_id} is replaced.
    trace_url: str | None = None
    # vLLM's own span per request (time in queue, prefill, decode, tokens) below the tier's.
    engine_spans: bool = True

    def resolved_endpoint(self) -> str | None:
        return os.environ.get(self.endpoint_env) or self.endpoint or None
