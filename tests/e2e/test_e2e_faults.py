"""Fault paths through the real ingress and router, over real Ray Serve, with fake tiers
that fail on request (tests/fault_app.py)."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from tests.conftest import sse_events
from tests.fault_app import marker, sse_text

pytestmark = pytest.mark.e2e


def _chat(base: str, content: str, stream: bool = False, max_tokens: int = 8,
          headers: dict[str, str] | None = None, timeout: float = 60) -> httpx.Response:
    body = {"model": "auto", "stream": stream, "max_tokens": max_tokens,
            "messages": [{"role": "user", "content": content}]}
    return httpx.post(f"{base}/v1/chat/completions", json=body, headers=headers, timeout=timeout)


def test_a_replica_dying_before_the_first_token_is_retried_on_its_own_tier(faults, tmp_path):
    claimed = marker(tmp_path, "a")
    resp = _chat(faults, f"Hello fault:die_before_first:{claimed}", stream=True)
    assert resp.status_code == 200, resp.text
    events = sse_events(resp.content)
    assert events[-1] == "[DONE]" and sse_text(events).split() == [f"w{i}" for i in range(8)]
    assert Path(claimed).exists()  # a replica did die on this request
    # Tierserve retried it on the same tier; or Serve did, when the replica died before
    # accepting the call (it retries those itself). Never a fallback to another tier.
    reason = resp.headers["x-tierserve-route-reason"]
    assert reason == "retry:replica_died" or not reason.startswith(("retry", "fallback")), reason


def test_a_long_non_streaming_answer_outlives_the_first_token_timeout(faults):
    # first_token_timeout_s is 2 here; the answer takes 4 s and must not be cut.
    resp = _chat(faults, "Hello fault:slow_whole:4")
    assert resp.status_code == 200, resp.text
    assert resp.json()["usage"]["completion_tokens"] == 8
    assert not resp.headers["x-tierserve-route-reason"].startswith(("fallback", "retry"))


def test_a_stream_that_goes_silent_is_carried_on_into_one_continuous_answer(faults):
    # After 3 words the replica sends nothing (stream_idle_timeout_s is 2 here): a stuck engine,
    # or a node that died before Ray noticed. The stream migrates as after a replica's death;
    # only with nowhere to go does it end in a `stream_idle_timeout` event (tests/unit/test_relay.py).
    resp = _chat(faults, "Hello fault:hang_after:3", stream=True)
    assert resp.status_code == 200
    events = sse_events(resp.content)
    assert events[-1] == "[DONE]" and not any("error" in e for e in events if isinstance(e, dict))
    assert sse_text(events).split() == [f"w{i}" for i in range(8)]


def test_a_hung_affinity_store_is_skipped_and_the_request_routed_without_it(faults):
    # The router's Redis accepts connections and never answers: the affinity read gives up
    # within 50 ms and the store is then skipped (app/breaker.py), so the router decides
    # within its budget, without affinity, instead of timing out to the default tier.
    for _ in range(3):
        resp = _chat(faults, "Hello", headers={"x-session-id": "s-hung-redis"})
        assert resp.status_code == 200, resp.text
        assert resp.headers["x-tierserve-route-reason"] == "rule:short-prompt"


def test_a_replica_dying_mid_stream_is_migrated_into_one_continuous_answer(faults, tmp_path):
    resp = _chat(faults, f"Hello fault:die_after:3:{marker(tmp_path, 'mid')}", stream=True,
                 headers={"x-request-id": "mid-stream-1"})
    assert resp.status_code == 200
    events = sse_events(resp.content)
    assert events[-1] == "[DONE]" and not any("error" in e for e in events if isinstance(e, dict))
    assert sse_text(events).split() == [f"w{i}" for i in range(8)]  # nothing lost, nothing twice
    chunks = [e for e in events if isinstance(e, dict)]
    assert len({c["id"] for c in chunks}) == 1  # one stream id for the client
    last = [c for c in chunks if c["choices"] and c["choices"][0].get("finish_reason")][-1]
    assert len(last["tierserve"]["served_by"]) == 2


def test_a_migrated_stream_counts_usage_as_the_client_received_it(faults, tmp_path):
    body = {"model": "auto", "stream": True, "max_tokens": 8,
            "stream_options": {"include_usage": True},
            "messages": [{"role": "user", "content": f"Hi fault:die_after:5:{marker(tmp_path, 'u')}"}]}
    resp = httpx.post(f"{faults}/v1/chat/completions", json=body, timeout=60)
    events = [e for e in sse_events(resp.content) if isinstance(e, dict)]
    usage = [e["usage"] for e in events if e.get("usage")]
    assert len(usage) == 1 and usage[0]["completion_tokens"] == 8
    assert usage[0]["prompt_tokens"] == 3  # the fake's original prompt, not the continuation's


def test_a_full_stream_after_faults_still_answers(faults):
    resp = _chat(faults, "Hello", stream=True, max_tokens=4)
    assert resp.status_code == 200 and sse_events(resp.content)[-1] == "[DONE]"


def test_a_redeploy_under_load_fails_no_request_and_cuts_no_stream(faults):
    """A changed config rolled out while streams flow: every deployment (ingress, router,
    tiers) is replaced, with surge, and old replicas drain their open streams."""
    import threading
    import time

    import tests.fault_app as fault_app

    before = fault_app.deployed
    assert before is not None
    data = before.model_dump()
    data["server"]["default_max_tokens"] = 12  # visible in every answer that omits max_tokens
    changed = type(before).model_validate(data)
    results: list[tuple[float, float, int, bytes]] = []
    stop = threading.Event()

    def client() -> None:
        body = {"model": "auto", "stream": True,
                "messages": [{"role": "user", "content": "Hello fault:pace:0.05"}]}
        with httpx.Client(timeout=60) as http:
            while not stop.is_set():
                start = time.monotonic()
                try:
                    with http.stream("POST", f"{faults}/v1/chat/completions", json=body) as resp:
                        status, raw = resp.status_code, resp.read()
                except httpx.HTTPError as exc:  # a dropped connection is a failure too
                    status, raw = -1, repr(exc).encode()
                results.append((start, time.monotonic(), status, raw))

    threads = [threading.Thread(target=client) for _ in range(4)]
    for t in threads:
        t.start()
    try:
        time.sleep(2)
        deploy_start = time.monotonic()
        fault_app.deploy_fault_app(changed)
        deploy_end = time.monotonic()
        time.sleep(3)
    finally:
        stop.set()
        for t in threads:
            t.join(timeout=60)
    try:
        failed = [(status, raw[-300:]) for _, _, status, raw in results if status != 200]
        assert not failed, failed
        lengths = []
        for _, _, _, raw in results:
            events = sse_events(raw)
            assert events[-1] == "[DONE]" and not any("error" in e for e in events if isinstance(e, dict))
            words = sse_text(events).split()
            assert words == [f"w{i}" for i in range(len(words))]  # whole, in order
            lengths.append(len(words))
        assert set(lengths) <= {16, 12}
        assert lengths[-1] == 12  # the new config serves now
        across = [r for r in results if r[0] < deploy_start + 1 and r[1] > deploy_start + 1]
        assert across and len(results) >= 20, (len(across), len(results), deploy_end - deploy_start)
    finally:
        fault_app.deploy_fault_app(before)
