"""The console's API and guard, on a real SQLite keys store; Serve's status and the router are
stand-ins here (the browser tests in test_e2e_console.py run against the real stack)."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from app.config import load_config
from app.console import engine_stats
from app.console import status as console_status
from app.console.api import ConsoleDeps, console_router
from app.console.recorder import DecisionLog
from app.http.errors import install_error_handlers
from app.keys.models import KeyCreate
from app.keys.secrets import AdminKeys, hash_key
from app.keys.store import KeyStore
from app.protocol.internal import RouteDecision

ADMIN = "admin-secret"
LOOPBACK = ("127.0.0.1", 5000)


class _Remote:
    def __init__(self, fn: Any) -> None:
        self.remote = fn


class FakeRouter:
    def __init__(self) -> None:
        self.paused: set[str] = set()

        async def set_suspended(tier: str, on: bool) -> list[str]:
            (self.paused.add if on else self.paused.discard)(tier)
            return sorted(self.paused)

        async def suspended() -> list[str]:
            return sorted(self.paused)

        self.set_suspended = _Remote(set_suspended)
        self.suspended = _Remote(suspended)


def _status(app_name: str) -> Any:
    from ray.serve._private.common import DeploymentStatus, ReplicaState

    deps = {"tier-fast": SimpleNamespace(status=DeploymentStatus.HEALTHY, message="",
                                         replica_states={ReplicaState.RUNNING: 2}),
            "tier-reasoning": SimpleNamespace(status="UPDATING", message="", replica_states={"STARTING": 1})}
    return SimpleNamespace(deployments=deps)


def _actors(app_name: str) -> list[dict[str, Any]]:
    return [{"deployment": "tier-fast", "actor_id": f"a{i}", "node_id": f"n{i}", "node_ip": f"10.0.0.{i}",
             "state": "ALIVE", "pid": 100 + i} for i in (1, 2)]


@pytest.fixture
def make_client(tmp_path, monkeypatch):
    monkeypatch.setattr(console_status, "_serve_status", _status)
    monkeypatch.setattr(console_status, "_replica_actors", _actors)
    monkeypatch.setattr(engine_stats, "metrics_urls", lambda: [])
    base = load_config("local-cpu")

    def make(mode: str = "loopback", admin: bool = True, peer: tuple[str, int] = LOOPBACK):
        server = base.server.model_copy(update={"console": base.server.console.model_copy(
            update={"mode": mode})})
        config = base.model_copy(update={"server": server})
        store = KeyStore(f"sqlite:///{tmp_path}/keys.db")
        log = DecisionLog(10)
        admins = AdminKeys(frozenset({hash_key(ADMIN)}) if admin else frozenset())
        router = FakeRouter()
        app = FastAPI()
        install_error_handlers(app)
        app.include_router(console_router(ConsoleDeps(config, admins, store, log, router, "tierserve")))
        client = TestClient(app, client=peer)
        return SimpleNamespace(client=client, log=log, store=store, router=router)

    return make


def auth(key: str = ADMIN) -> dict[str, str]:
    return {"authorization": f"Bearer {key}"}


def test_page_and_assets_are_served_without_data(make_client):
    c = make_client().client
    page = c.get("/console/")
    assert page.status_code == 200 and "static/console.js" in page.text
    assert "https://" not in page.text and "http://" not in page.text  # no CDN: works offline
    assert c.get("/console/static/console.js").headers["content-type"].startswith("text/javascript")
    assert c.get("/console/static/../api.py").status_code == 404
    assert c.get("/console", follow_redirects=False).headers["location"] == "console/"


def test_api_needs_the_admin_key(make_client):
    c = make_client().client
    for headers in ({}, auth("wrong")):
        r = c.get("/console/api/overview", headers=headers)
        assert r.status_code == 401 and r.json()["error"]["code"] == "invalid_api_key"
    assert c.get("/console/api/overview", headers=auth()).status_code == 200


def test_modes(make_client):
    assert make_client(mode="off").client.get("/console/").status_code == 404
    remote = make_client(peer=("10.1.2.3", 5000)).client
    r = remote.get("/console/api/overview", headers=auth())
    assert r.status_code == 403 and r.json()["error"]["code"] == "console_loopback_only"
    proxied = make_client().client.get("/console/", headers={"x-forwarded-for": "203.0.113.9"})
    assert proxied.status_code == 403
    assert make_client(mode="on", peer=("10.1.2.3", 5000)).client.get(
        "/console/api/overview", headers=auth()).status_code == 200
    # No admin key configured: open on loopback (like the local API), refused when exposed.
    assert make_client(admin=False).client.get("/console/api/overview").status_code == 200
    exposed = make_client(mode="on", admin=False, peer=("10.1.2.3", 5000)).client
    assert exposed.get("/console/api/overview").json()["error"]["code"] == "admin_disabled"


def test_overview_shows_tiers_replicas_per_node_and_suspend(make_client):
    env = make_client()
    ov = env.client.get("/console/api/overview", headers=auth()).json()
    fast, reasoning = ov["tiers"]
    assert fast["replica_states"] == {"RUNNING": 2} and fast["nodes"] == {"10.0.0.1": 1, "10.0.0.2": 1}
    assert fast["status"] == "HEALTHY"  # Serve's value, not the enum's name
    assert reasoning["status"] == "UPDATING" and reasoning["replicas"] == []
    assert fast["served_model_name"] and fast["min_replicas"] <= fast["max_replicas"]
    r = env.client.post("/console/api/tiers/reasoning/suspend", headers=auth())
    assert r.json() == {"suspended": ["reasoning"]}
    ov = env.client.get("/console/api/overview", headers=auth()).json()
    assert [t["suspended"] for t in ov["tiers"]] == [False, True] and ov["suspended"] == ["reasoning"]
    assert env.client.post("/console/api/tiers/reasoning/resume", headers=auth()).json() == {"suspended": []}
    assert env.client.post("/console/api/tiers/nope/suspend", headers=auth()).status_code == 404
    assert env.client.post("/console/api/tiers/fast/suspend", headers=auth("x")).status_code == 401
    assert env.router.paused == set()


def _overview_routing(profile: str, router, monkeypatch) -> dict[str, Any]:
    monkeypatch.setattr(console_status, "_serve_status", _status)  # never a real Ray here
    monkeypatch.setattr(console_status, "_replica_actors", _actors)
    monkeypatch.setattr(engine_stats, "metrics_urls", lambda: [])
    config = load_config(profile)
    app = FastAPI()
    store = KeyStore("sqlite://")
    app.include_router(console_router(ConsoleDeps(config, AdminKeys(frozenset()), store, DecisionLog(1),
                                                  router, "tierserve")))
    return TestClient(app, client=LOOPBACK).get("/console/api/overview").json()["routing"]


@pytest.mark.parametrize("profile", ["local-cpu-3tier", "local-cpu-costaware"])
def test_overview_shows_the_ladder_and_thresholds_the_router_uses(profile, monkeypatch):
    from app.routing.assemble import build_pipeline
    from deployments.router import Router

    config = load_config(profile)
    # The router's own answer, from the real pipeline the router deployment builds.
    used = asyncio.run(Router.routing_view(SimpleNamespace(_config=config,
                                                           _pipeline=build_pipeline(config))))
    assert used["ladder"] == config.routing.ladder and used["thresholds"] == config.routing.thresholds
    picker = config.routing.plugins.picker
    assert used["picker"] == (picker.name if picker else "ladder")
    router = FakeRouter()
    moved = [round(t / 2, 6) for t in used["thresholds"]]  # e.g. a promoted scorer's, live

    async def routing_view() -> dict[str, Any]:
        return {**used, "thresholds": moved}

    router.routing_view = _Remote(routing_view)
    shown = _overview_routing(profile, router, monkeypatch)
    assert shown["ladder"] == config.routing.ladder and shown["thresholds"] == moved
    assert shown["thresholds_from"] == "router" and shown["picker"] == used["picker"]
    assert "threshold" not in shown  # the two-tier default a ladder profile never uses
    assert sum(shown["target_shares"].values()) == pytest.approx(1)
    # Router not answering: the config's ladder and thresholds, said to be the config's.
    fallback = _overview_routing(profile, FakeRouter(), monkeypatch)
    assert fallback["thresholds"] == config.routing.thresholds and fallback["thresholds_from"] == "config"
    assert fallback["ladder"] == config.routing.ladder


def test_a_ladder_decision_keeps_its_thresholds():
    log = DecisionLog(2)
    decision = RouteDecision(tier="medium", reason="score", score=0.2, thresholds=[0.17, 0.29])
    log.add({"request_id": "r", "at": 1.0, "endpoint": "chat", "tier": "medium", "reason": "score",
             "status": 200, "latency_ms": 1.0, "decision": decision})
    (record,) = log.recent(1)
    assert record.thresholds == [0.17, 0.29] and record.threshold is None
    assert "thresholds" not in record.details  # its own field, not buried in the details


def test_decisions_ring_and_shares(make_client):
    env = make_client()
    decision = RouteDecision(tier="reasoning", reason="score", score=0.9, threshold=0.5,
                             features={"prompt_tokens": 40.0})
    for i in range(15):
        env.log.add({"request_id": f"r{i}", "at": 1.0, "endpoint": "chat", "tier": "fast" if i % 3 else
                     "reasoning", "reason": "rule:short" if i % 3 else "score", "status": 200,
                     "latency_ms": 5.0, "ttft_ms": 2.0, "decision": decision})
    env.log.add({"request_id": "bad", "at": 1.0, "endpoint": "chat", "tier": "none", "reason": "none",
                 "status": 400, "latency_ms": 1.0})
    got = env.client.get("/console/api/decisions?limit=5", headers=auth()).json()
    assert [d["request_id"] for d in got] == ["bad", "r14", "r13", "r12", "r11"]
    assert got[1]["score"] == 0.9 and got[1]["details"] == {"features": {"prompt_tokens": 40.0}}
    assert "prompt" not in got[1] or got[1]["prompt"] is None
    live = env.client.get("/console/api/overview", headers=auth()).json()["live"]
    assert live["total"] == 15 and live["tiers"]["reasoning"]["requests"] == 5
    assert {"tier": "fast", "reason": "rule", "requests": 10} in live["reasons"]
    assert len(env.client.get("/console/api/decisions?limit=100", headers=auth()).json()) == 10


def test_teams_read_only_from_the_keys_store(make_client):
    env = make_client()
    assert env.client.get("/console/api/teams", headers=auth()).json() == {"keys": [], "usage": None}
    created = env.store.create(KeyCreate(team="search", name="api", rpm=10))
    body = env.client.get("/console/api/teams", headers=auth()).json()
    assert [k["team"] for k in body["keys"]] == ["search"]
    assert created.key not in str(body) and body["usage"]["teams"] == []


def test_disabled_ring_records_nothing():
    log = DecisionLog(0)
    log.add({"request_id": "x", "tier": "fast", "reason": "score", "status": 200})
    assert log.recent() == [] and log.shares()["total"] == 0


def test_engine_gauges_per_served_model():
    text = """# HELP ray_vllm_kv_cache_usage_perc KV-cache usage
ray_vllm_kv_cache_usage_perc{WorkerId="a",model_name="tiny-fast"} 0.25
ray_vllm_kv_cache_usage_perc{WorkerId="b",model_name="tiny-fast"} 0.5
ray_vllm_num_requests_running{WorkerId="a",model_name="tiny-fast"} 3.0
ray_vllm_num_requests_running{WorkerId="b",model_name="tiny-fast"} 1.0
ray_vllm_num_requests_waiting{WorkerId="a",model_name="tiny-reasoning"} 2.0
ray_vllm_num_requests_waiting_by_reason{model_name="tiny-reasoning",reason="x"} 9.0
ray_serve_num_ongoing_requests{deployment="tier-fast"} 7.0
"""
    stats = engine_stats.parse([text])
    assert stats["tiny-fast"].kv_cache_usage == 0.5 and stats["tiny-fast"].running == 4.0
    assert stats["tiny-fast"].engines == 2 and stats["tiny-reasoning"].waiting == 2.0


def test_make_up_prints_where_the_console_is(monkeypatch):
    from app.console.links import console_line

    base = load_config("local-cpu")

    def with_mode(mode: str):
        server = base.server.model_copy(update={"console": base.server.console.model_copy(
            update={"mode": mode})})
        return base.model_copy(update={"server": server})

    monkeypatch.delenv("TIERSERVE_ADMIN_KEYS", raising=False)
    monkeypatch.delenv("TIERSERVE_ADMIN_KEY_FILE", raising=False)
    url = "http://127.0.0.1:8000"
    open_line = console_line(with_mode("loopback"), url)
    assert open_line == f"{url}/console/ (open on loopback: no admin key is set)"
    assert console_line(with_mode("on"), url).startswith("off until an admin key is set")
    assert console_line(with_mode("off"), url) == "off (server.console.mode)"
    monkeypatch.setenv("TIERSERVE_ADMIN_KEYS", "secret")
    line = console_line(with_mode("on"), url)
    assert line.startswith(f"{url}/console/") and "secret" not in line
