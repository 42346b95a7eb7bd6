"""Tracing without Ray: spans built by app/telemetry reach a real OTLP/HTTP receiver on
loopback as one tree; off means no tracer at all. (The e2e tree through Ray Serve's handle
calls is in test_e2e_tracing.py.)"""

from __future__ import annotations

import asyncio

import pytest

from app.config.operations import TracingConfig
from app.protocol.internal import PluginContribution, RouteDecision, TierCall
from app.telemetry import tracing as tracing_mod
from app.telemetry.request import RequestTrace
from app.telemetry.routing import decision_span
from app.telemetry.tier import traced
from tests.otlp_receiver import OtlpReceiver

CLIENT_TRACE = "0af7651916cd43dd8448eb211c80319c"
CLIENT_SPAN = "b7ad6b7169203331"


@pytest.fixture
def receiver():
    r = OtlpReceiver()
    yield r
    r.close()


def test_off_unless_an_endpoint_is_set(monkeypatch):
    monkeypatch.delenv("TIERSERVE_OTLP_ENDPOINT", raising=False)
    off = tracing_mod.setup(TracingConfig(), "ingress")
    assert not off.on and off.start("x") is None
    assert RequestTrace.start(off, {}, "chat", "/v1/chat/completions", "r1") is None
    monkeypatch.setenv("TIERSERVE_OTLP_ENDPOINT", "http://127.0.0.1:9/v1/traces")
    assert TracingConfig().resolved_endpoint() == "http://127.0.0.1:9/v1/traces"


def test_one_request_forms_one_tree(receiver, monkeypatch):
    monkeypatch.setenv("TIERSERVE_OTLP_ENDPOINT", receiver.url)
    tracer = tracing_mod.setup(TracingConfig(), "test")
    headers = {"traceparent": f"00-{CLIENT_TRACE}-{CLIENT_SPAN}-01"}
    trace = RequestTrace.start(tracer, headers, "chat", "/v1/chat/completions", "req-1")
    assert trace is not None and trace.trace_id == CLIENT_TRACE
    assert trace.traceparent.startswith(f"00-{CLIENT_TRACE}-") and trace.traceparent.endswith("-01")
    trace.mark("ingress.admission")
    route_parent = trace.open("ingress.route")
    decision = RouteDecision(tier="reasoning", reason="score", score=0.8, threshold=0.5, contributions=[
        PluginContribution(plugin="rules", kind="pin", outcome="none", ms=0.1),
        PluginContribution(plugin="learned", kind="scorer", outcome="0.8", value=0.8, ms=0.4)])
    decision_span(tracer, route_parent, decision, tracing_mod.now_ns())
    trace.close("ingress.route")

    async def generate(call: TierCall):
        yield ["data: {}\n\n"]
        yield ["data: [DONE]\n\n"]

    dispatch_parent = trace.open("ingress.dispatch")
    call = TierCall(request_id="req-1", endpoint="chat", body={"stream": True},
                    traceparent=dispatch_parent)
    async def consume() -> list:
        return [x async for x in traced(tracer, "reasoning", generate)(call)]

    assert asyncio.run(consume()) == [["data: {}\n\n"], ["data: [DONE]\n\n"]]
    trace.close("ingress.dispatch", {"tierserve.attempts": 1})
    trace.end(200, "reasoning", "score", 1, 0.05, 10, 2, [])
    for provider in tracing_mod._providers.values():
        provider.force_flush()

    spans = receiver.trace(CLIENT_TRACE, until=lambda s: len(s) >= 8)
    by_name = {s.name: s for s in spans}
    assert set(by_name) == {"POST /v1/chat/completions", "ingress.admission", "ingress.route",
                            "router.decide", "router.plugin rules", "router.plugin learned",
                            "ingress.dispatch", "tier.generate"}
    root = by_name["POST /v1/chat/completions"]
    assert root.parent_span_id == CLIENT_SPAN and root.service == "tierserve"
    parents = {s.name: s.parent_span_id for s in spans}
    ids = {s.name: s.span_id for s in spans}
    for child in ("ingress.admission", "ingress.route", "ingress.dispatch"):
        assert parents[child] == ids[root.name]
    assert parents["router.decide"] == ids["ingress.route"]
    assert parents["router.plugin learned"] == ids["router.decide"]
    assert parents["tier.generate"] == ids["ingress.dispatch"]
    assert by_name["router.decide"].attributes["tierserve.tier"] == "reasoning"
    assert by_name["router.plugin learned"].attributes["tierserve.plugin.value"] == 0.8
    assert root.attributes["tierserve.tier"] == "reasoning"
    assert root.attributes["gen_ai.usage.output_tokens"] == 2
    assert [e for e, _ in root.events] == ["first_token"]
    assert [e for e, _ in by_name["tier.generate"].events] == ["first_output"]
    trace.end(500, "fast", "x", 2, None, 0, 0, [])  # a second end changes nothing
    tracing_mod._providers[next(iter(tracing_mod._providers))].force_flush()
    again = receiver.trace(CLIENT_TRACE)
    assert len(again) == len(spans) and root.attributes["http.response.status_code"] == 200
