"""One `auto` request through real Ray Serve and vLLM forms one trace: the ingress's server
span (child of the client's traceparent, returned in the response), the router's decision
below the ingress's route span, and the tier's span below the dispatch span, exported by each
replica over OTLP/HTTP to the session's receiver on loopback (tests/otlp_receiver.py)."""

from __future__ import annotations

import secrets

import httpx
import pytest

pytestmark = pytest.mark.e2e

HARD = ("Prove step by step that the square root of 2 is irrational. " * 3).strip()
ROOT = "POST /v1/chat/completions"


def _complete(spans) -> bool:
    names = {s.name for s in spans}
    return {ROOT, "ingress.route", "router.decide", "ingress.dispatch", "tier.generate"} <= names


def test_auto_request_is_one_trace_ingress_router_tier(tierserve_stack):
    otlp = tierserve_stack.otlp
    # The session's first routed request may outlast the decision budget (router_timeout).
    httpx.post(f"{tierserve_stack.base_url}/v1/chat/completions", timeout=120,
               json={"model": "auto", "max_tokens": 1, "messages": [{"role": "user", "content": HARD}]})
    trace_id, client_span = secrets.token_hex(16), secrets.token_hex(8)
    with httpx.stream("POST", f"{tierserve_stack.base_url}/v1/chat/completions", timeout=120,
                      headers={"traceparent": f"00-{trace_id}-{client_span}-01"},
                      json={"model": "auto", "stream": True, "max_tokens": 8,
                            "messages": [{"role": "user", "content": HARD}]}) as resp:
        assert resp.status_code == 200
        body = b"".join(resp.iter_bytes())
        returned = resp.headers["traceparent"]
    assert b"[DONE]" in body
    version, tid, ingress_span, flags = returned.split("-")
    assert (version, tid, flags) == ("00", trace_id, "01") and ingress_span != client_span

    spans = otlp.trace(trace_id, until=_complete, timeout_s=30)
    assert _complete(spans), sorted(s.name for s in spans)
    by_name = {s.name: s for s in spans}
    ids = {s.span_id for s in spans}
    root = by_name[ROOT]
    assert root.span_id == ingress_span and root.parent_span_id == client_span
    assert all(s.parent_span_id in ids for s in spans if s is not root), "one tree"
    assert by_name["ingress.route"].parent_span_id == root.span_id
    assert by_name["router.decide"].parent_span_id == by_name["ingress.route"].span_id
    assert by_name["ingress.dispatch"].parent_span_id == root.span_id
    tier = by_name["tier.generate"]
    assert tier.parent_span_id == by_name["ingress.dispatch"].span_id
    # Attributes: where it went and why, the same in every layer.
    assert root.attributes["tierserve.route_reason"].startswith("rule:"), root.attributes
    assert root.attributes["tierserve.tier"] == "reasoning"
    assert by_name["router.decide"].attributes["tierserve.tier"] == "reasoning"
    assert tier.attributes["tierserve.tier"] == "reasoning"
    assert root.attributes["http.response.status_code"] == 200
    assert root.attributes["gen_ai.usage.output_tokens"] > 0
    assert root.attributes["tierserve.request_id"] == tier.attributes["tierserve.request_id"]
    assert "first_token" in [e for e, _ in root.events]
    assert "first_output" in [e for e, _ in tier.events]
    # Each layer exported from its own replica process; times nest.
    assert root.start_ns <= by_name["router.decide"].start_ns <= tier.start_ns <= tier.end_ns <= root.end_ns
    assert {s.service for s in spans if s.name != "llm_request"} == {"tierserve"}
    # vLLM's own span (engine tracing, tracing.engine_spans) below the tier's: queue and TTFT.
    engine = otlp.trace(trace_id, until=lambda got: any(s.name == "llm_request" for s in got))
    llm = next(s for s in engine if s.name == "llm_request")
    assert llm.parent_span_id == tier.span_id
    assert llm.attributes["gen_ai.latency.time_in_queue"] >= 0
    assert llm.attributes["gen_ai.usage.completion_tokens"] == root.attributes["gen_ai.usage.output_tokens"]


def test_without_client_context_a_new_trace_is_returned(tierserve_stack):
    r = httpx.post(f"{tierserve_stack.base_url}/v1/chat/completions", timeout=120,
                   json={"model": "auto", "max_tokens": 2, "messages": [{"role": "user", "content": "Hi"}]})
    assert r.status_code == 200
    _, trace_id, span_id, _ = r.headers["traceparent"].split("-")
    spans = tierserve_stack.otlp.trace(trace_id, until=_complete, timeout_s=30)
    root = next(s for s in spans if s.name == ROOT)
    assert root.span_id == span_id and root.parent_span_id == ""
