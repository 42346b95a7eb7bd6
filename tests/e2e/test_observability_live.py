"""Live: a real Prometheus scrapes the running Ray + Tierserve app on loopback.

Uses the shared `tierserve_stack` fixture (tests/conftest.py): `.base_url`,
`.ray_address`, `.metrics_ports`. Starts only a Prometheus process, and stops it.
"""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from tooling.observability.local_prometheus import LocalPrometheus
from tooling.observability.paths import REPO_ROOT
from tooling.observability.snapshot import render_snapshot

pytestmark = pytest.mark.e2e

# Short prompt -> fast (rule short-prompt); proof wording and high reasoning effort -> reasoning.
REQUESTS: list[dict[str, Any]] = [
    {"messages": [{"role": "user", "content": "Say hi."}]},
    {"messages": [{"role": "user", "content": "Name a colour."}], "stream": True},
    {"messages": [{"role": "user",
                   "content": "Prove step by step that the sum of two even numbers is even."}]},
    {"messages": [{"role": "user", "content": "Is 7 prime?"}], "reasoning_effort": "high"},
]


def _tiers(result: list[dict[str, Any]]) -> set[str]:
    return {s["metric"].get("tier", "") for s in result}


def _poll_tiers(prom: LocalPrometheus, expr: str, want: set[str]) -> list[dict[str, Any]]:
    # Ray reports metrics to its exporter every few seconds; Prometheus then scrapes and evaluates.
    return prom.wait_for(expr, lambda result: want <= _tiers(result), timeout_s=120, poll_s=2)


def _send(base_url: str, headers: dict[str, str]) -> None:
    with httpx.Client(base_url=base_url, headers=headers, timeout=300) as client:
        for body in REQUESTS:
            payload = {"model": "auto", "max_tokens": 8, **body}
            if payload.get("stream"):
                with client.stream("POST", "/v1/chat/completions", json=payload) as resp:
                    assert resp.status_code == 200, resp.read()
                    for _ in resp.iter_lines():
                        pass
            else:
                resp = client.post("/v1/chat/completions", json=payload)
                assert resp.status_code == 200, resp.text


def test_prometheus_sees_tierserve_series_and_rules(tierserve_stack: Any) -> None:
    api_key = getattr(tierserve_stack, "api_key", None)
    headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
    with LocalPrometheus(list(tierserve_stack.metrics_ports), interval="2s") as prom:
        _send(tierserve_stack.base_url, headers)
        raw = _poll_tiers(prom, "ray_tierserve_requests_total", {"fast", "reasoning"})
        # Other e2e tests share the stack (and send bad requests on purpose): look for our 200s.
        ok = {s["metric"].get("tier") for s in raw if s["metric"].get("status") == "200"}
        assert {"fast", "reasoning"} <= ok, raw
        # Bounded tier label: the tiers, or empty/"none" for requests that never reached one.
        assert not _tiers(raw) - {"fast", "reasoning", "", "none"}, _tiers(raw)
        # A second batch makes the counters move between scrapes, so rates are non-zero.
        _send(tierserve_stack.base_url, headers)
        _poll_tiers(prom, "tierserve_tier:requests:rate5m > 0", {"fast", "reasoning"})
        assert prom.query("up == 1"), "no Ray metrics target is up"
        assert not prom.rule_errors()
        # The router's picker threshold (what a scored request is compared with), in [0, 1].
        threshold = prom.wait_for("ray_tierserve_route_threshold", bool, timeout_s=60, poll_s=2)
        assert all(0 <= float(s["value"][1]) <= 1 for s in threshold), threshold
        # A picture of this real data for the README (results/ is git-ignored; copy it to docs/).
        render_snapshot(prom.url, REPO_ROOT / "results" / "observability.png", minutes=5, step_s=2)
