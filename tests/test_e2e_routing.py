"""Routing in the real graph: session affinity, and fallback when a tier loses its replica."""

from __future__ import annotations

import time
import uuid

import httpx
import pytest

pytestmark = pytest.mark.e2e

HARD = "Prove step by step that there are infinitely many primes."


def _chat(stack, content: str, headers: dict | None = None) -> httpx.Response:
    return httpx.post(f"{stack.base_url}/v1/chat/completions", headers=headers or {}, timeout=120,
                      json={"model": "auto", "max_tokens": 2,
                            "messages": [{"role": "user", "content": content}]})


def test_session_that_went_to_reasoning_stays_there(tierserve_stack):
    session = {"x-session-id": f"s-{uuid.uuid4()}"}
    first = _chat(tierserve_stack, HARD, session)
    assert first.headers["x-tierserve-tier"] == "reasoning"
    follow_up = _chat(tierserve_stack, "Thanks!", session)
    assert follow_up.status_code == 200
    assert follow_up.headers["x-tierserve-tier"] == "reasoning"
    assert follow_up.headers["x-tierserve-route-reason"] == "affinity"
    stranger = _chat(tierserve_stack, "Thanks!", {"x-session-id": f"s-{uuid.uuid4()}"})
    assert stranger.headers["x-tierserve-tier"] == "fast"


def test_tier_header_override(tierserve_stack):
    resp = _chat(tierserve_stack, "Hi", {"x-tierserve-tier": "reasoning"})
    assert resp.headers["x-tierserve-tier"] == "reasoning"
    assert resp.headers["x-tierserve-route-reason"] == "header"


def _fast_replica_actor(stack):
    import ray
    from ray.util.state import list_actors

    # Name the cluster: another Ray may run on this machine.
    for actor in list_actors(address=stack.dashboard_url, filters=[("state", "=", "ALIVE")], limit=1000):
        if actor.name and "#tier-fast#" in actor.name:
            return ray.get_actor(actor.name, namespace="serve")
    raise AssertionError("no live tier-fast replica")


def test_lost_replica_falls_back_without_losing_requests(tierserve_stack):
    import ray

    assert _chat(tierserve_stack, "Hello").headers["x-tierserve-tier"] == "fast"
    ray.kill(_fast_replica_actor(tierserve_stack), no_restart=True)
    reasons = []
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        resp = _chat(tierserve_stack, "Hello")
        assert resp.status_code == 200, resp.text  # no request is lost while fast is down
        reasons.append((resp.headers["x-tierserve-tier"], resp.headers["x-tierserve-route-reason"]))
        if reasons[-1][0] == "reasoning" and len(reasons) >= 3:
            break
        time.sleep(0.5)
    assert reasons[-1][0] == "reasoning"
    assert reasons[-1][1].startswith("fallback:"), reasons
    # Serve replaces the replica; once it has warmed up, easy prompts go back to fast.
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline:
        if httpx.get(f"{tierserve_stack.base_url}/readyz", timeout=10).status_code == 200:
            resp = _chat(tierserve_stack, "Hello")
            if resp.headers["x-tierserve-tier"] == "fast":
                break
        time.sleep(2)
    assert _chat(tierserve_stack, "Hello").headers["x-tierserve-tier"] == "fast"
