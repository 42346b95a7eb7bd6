"""Learning from traffic, unit by unit: the decision-record store, the feedback endpoint, the
router's recorder (shadow score, training features), labels -> training rows, the shadow
comparison, live routing settings and the config edit `route-promote` makes."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from app.config.live import apply_router_user_config, router_user_config
from app.config.loader import load_config
from app.http.errors import OpenAIError, install_error_handlers
from app.http.feedback import feedback_router
from app.keys.enforcer import Principal
from app.keys.models import KeyInfo
from app.keys.traffic import FeedbackRequest, Labelled, RouteRecord, TrafficStore
from app.routing.learned_embed import DENSE_NAMES
from app.routing.learning import training_features
from tests.servers import database_url
from tooling.routeops.labels import feedback_rows, weak_strong
from tooling.routeops.promote import set_learned
from tooling.routeops.shadow import auc, compare


@pytest.fixture(params=["sqlite", "postgresql"])
def store(request, tmp_path):
    """The decision-record store on SQLite (the default) and on a real PostgreSQL server."""
    s = TrafficStore(database_url(request, tmp_path, "tierserve_route_feedback", "tierserve_route_records"))
    yield s
    s.close()


def rec(rid: str, tier: str = "fast", ts: float = 1000.0, team: str | None = None, **kw) -> RouteRecord:
    return RouteRecord(request_id=rid, ts=ts, team=team, tier=tier, reason="score", **kw)


def test_records_and_labels_round_trip(store):
    feats = {"v": 1, "dense": [0.5], "emb": [0.1, 0.2], "options": True}
    store.add_records([rec("a", score=0.1, features=feats), rec("b", tier="reasoning", score=0.9)])
    store.add_records([rec("a", tier="reasoning", score=0.7)])  # a reused id: the latest counts
    assert store.find("a").tier == "reasoning" and store.find("a").features is None
    assert store.find("b").score == 0.9 and store.find("zzz") is None
    store.add_feedback("a", "fine", None, None)
    store.add_feedback("a", "needed_stronger", None, None)  # the latest label counts
    store.add_feedback("b", "score", 0.25, "t1")
    got = {x.record.request_id: (x.outcome, x.value, x.record.tier) for x in store.labelled()}
    assert got == {"a": ("needed_stronger", None, "reasoning"), "b": ("score", 0.25, "reasoning")}
    assert [r.request_id for r in store.recent()] == ["a", "b", "a"]


def test_retention_by_count_and_age(store):
    store.add_records([rec(f"r{i}", ts=1000.0 + i) for i in range(10)])
    store.add_feedback("r0", "fine", None, None, now=1000.0)
    assert store.prune(max_records=6, max_age_s=1e9, now=2000.0) == 4
    assert [r.request_id for r in store.recent()] == [f"r{i}" for i in range(4, 10)]
    assert store.prune(max_records=100, max_age_s=1003.5, now=2010.0) == 3  # ts < 1006.5 go
    assert [r.request_id for r in store.recent()] == ["r7", "r8", "r9"]
    assert store.labelled() == []  # r0's label went with its record


def test_feedback_request_needs_a_score_exactly_with_outcome_score():
    assert FeedbackRequest(request_id="x", outcome="score", score=0.5).score == 0.5
    for bad in ({"request_id": "x", "outcome": "score"},
                {"request_id": "x", "outcome": "fine", "score": 0.5},
                {"request_id": "x", "outcome": "meh"},
                {"request_id": "", "outcome": "fine"},
                {"request_id": "x", "outcome": "score", "score": 1.5}):
        with pytest.raises(ValueError):
            FeedbackRequest.model_validate(bad)


def _key(team: str) -> KeyInfo:
    return KeyInfo.model_validate({"id": "k1", "prefix": "ts-abc", "team": team, "name": "n",
                                   "tiers": None, "allow_pin": True, "created_at": 1.0})


@pytest.fixture
def api(store):
    """The endpoint with the API's error handlers; the bearer token names the caller's team."""
    limited: list[str] = []

    async def authenticate(header: str | None) -> Principal:
        if not header:
            raise OpenAIError(401, "A key is required.", code="invalid_api_key")
        team = header.removeprefix("Bearer ")
        return Principal(_key(team), "key", f"id-{team}")

    app = FastAPI()
    install_error_handlers(app)
    app.include_router(feedback_router(store, authenticate, limited.append, wait_for_record_s=0.3))
    store.add_records([rec("req-1", team="red"), rec("req-2", tier="reasoning", team="blue")])
    return TestClient(app), limited


def test_feedback_endpoint_stores_labels_for_own_team(api, store):
    client, limited = api
    r = client.post("/v1/feedback", json={"request_id": "req-1", "outcome": "needed_stronger"},
                    headers={"authorization": "Bearer red"})
    assert r.status_code == 200, r.text
    assert r.json() == {"object": "feedback", "request_id": "req-1", "outcome": "needed_stronger",
                        "score": None, "tier": "fast"}
    assert limited == ["id-red"]  # the per-caller rate limit applies as on /v1
    (label,) = store.labelled()
    assert (label.record.request_id, label.outcome) == ("req-1", "needed_stronger")


@pytest.mark.parametrize(("body", "auth", "status", "code", "param"), [
    ({"request_id": "req-1", "outcome": "meh"}, "red", 400, None, "outcome"),
    ({"request_id": "req-1", "outcome": "score"}, "red", 400, None, None),
    ({"outcome": "fine"}, "red", 400, None, "request_id"),
    ({"request_id": "nope", "outcome": "fine"}, "red", 404, "request_not_found", "request_id"),
    ({"request_id": "req-2", "outcome": "fine"}, "red", 404, "request_not_found", "request_id"),
    ({"request_id": "req-1", "outcome": "fine"}, None, 401, "invalid_api_key", None),
])
def test_feedback_endpoint_errors_are_openai_shaped(api, store, body, auth, status, code, param):
    client, _ = api
    headers = {"authorization": f"Bearer {auth}"} if auth else {}
    r = client.post("/v1/feedback", json=body, headers=headers)
    assert r.status_code == status, r.text
    err = r.json()["error"]
    assert set(err) >= {"message", "type", "param", "code"}
    if code:
        assert err["code"] == code
    if param:
        assert err["param"] == param
    assert store.labelled() == []


def test_feedback_endpoint_refuses_a_body_that_is_not_json(api):
    client, _ = api
    r = client.post("/v1/feedback", content=b"{not json", headers={"authorization": "Bearer red"})
    assert r.status_code == 400 and "error" in r.json()


def test_labels_map_to_what_the_scorer_predicts():
    def lab(outcome: str, tier: str, value: float | None = None) -> tuple[bool, bool] | None:
        return weak_strong(Labelled(record=rec("x", tier=tier), outcome=outcome, value=value),
                           "fast", "reasoning")

    assert lab("needed_stronger", "fast") == (False, True)  # label 1
    assert lab("needed_stronger", "reasoning") == (False, False)  # nothing stronger: label 0
    assert lab("fine", "fast") == (True, True)  # label 0
    assert lab("fine", "reasoning") is None  # says nothing about the weak tier
    assert lab("score", "fast", 0.2) == (False, True) and lab("score", "fast", 0.9) == (True, True)


def test_feedback_rows_use_recorded_features_only():
    feats = training_features("Q: 2+2?\nA. 3\nB. 4\nC. 5\nD. 6")
    assert len(feats["dense"]) == len(DENSE_NAMES) and len(feats["emb"]) == 256
    items = [Labelled(record=rec("a", features=feats), outcome="needed_stronger"),
             Labelled(record=rec("b", features=feats), outcome="fine"),
             Labelled(record=rec("c"), outcome="fine"),  # recorded without features
             Labelled(record=rec("d", tier="reasoning", features=feats), outcome="fine")]
    found = feedback_rows(items, "fast", "reasoning")
    assert (found.used, found.skipped_no_features, found.skipped_uninformative) == (2, 1, 1)
    assert found.rows.label.tolist() == [1.0, 0.0] and found.rows.emb.shape == (2, 256)


def test_shadow_comparison_counts_agreement_and_ranks_labels():
    recs = [rec("a", tier="fast", score=0.1, shadow_score=0.2, shadow_tier="fast",
                scorer_version="live@1", shadow_version="cand@2"),
            rec("b", tier="reasoning", score=0.9, shadow_score=0.1, shadow_tier="fast",
                scorer_version="live@1", shadow_version="cand@2"),
            rec("c", tier="fast", score=0.2, shadow_score=0.8, shadow_tier="reasoning",
                scorer_version="live@1", shadow_version="cand@2")]
    labels = [Labelled(record=recs[0], outcome="fine"), Labelled(record=recs[2], outcome="needed_stronger")]
    report = compare(recs, labels, "fast", "reasoning")
    assert report.n == 3 and report.agreement == pytest.approx(1 / 3)
    assert report.live_up_share == pytest.approx(1 / 3) and report.shadow_up_share == pytest.approx(1 / 3)
    assert report.n_labelled == 2
    assert report.live_auc == 1.0 and report.shadow_auc == 1.0  # both rank c above a
    assert report.live_right == 0.5 and report.shadow_right == 1.0  # only the shadow sends c up
    assert auc(np.array([0.1, 0.9]), np.array([True, False])) == 0.0


def test_router_recorder_scores_the_shadow_and_keeps_features(tmp_path, monkeypatch):
    from app.config.schema import TierserveConfig
    from app.protocol.internal import RouteDecision, RouteRequest
    from deployments.traffic import TrafficRecorder

    monkeypatch.setenv("TIERSERVE_DB_URL", f"sqlite:///{tmp_path}/keys.db")
    data = load_config("local-cpu").model_dump()
    data["routing"]["learned"]["shadow_artifact"] = "app/routing/artifacts/complexity_embed.json"
    data["routing"]["feedback"].update(record_features=True, flush_s=0.05)
    config = TierserveConfig.model_validate(data)
    recorder = TrafficRecorder(config, TrafficRecorder.load_shadow(config))
    req = RouteRequest(request_id="r1", endpoint="chat", model="auto", team="red",
                       prompt_text="Natalia sold clips to 48 of her friends. How many in all?")
    decision = RouteDecision(tier="fast", reason="score", score=0.1, scorer_version="live@1")

    async def run() -> None:
        recorder.observe(req, decision)
        for _ in range(100):
            await asyncio.sleep(0.05)
            if not recorder._writer.pending and not recorder._tasks:
                break
        await recorder.flush()
    asyncio.run(run())
    store = TrafficStore(f"sqlite:///{tmp_path}/keys.db")
    got = store.find("r1")
    assert got is not None and got.team == "red" and got.tier == "fast"
    assert got.shadow_version.startswith("complexity_embed.json@") and 0 <= got.shadow_score <= 1
    assert got.shadow_tier in ("fast", "reasoning") and got.prompt is None  # log_prompts is off
    assert len(got.features["emb"]) == 256
    store.close()


def test_router_recorder_close_writes_a_decision_still_being_recorded(tmp_path, monkeypatch):
    from app.protocol.internal import RouteDecision, RouteRequest
    from deployments.traffic import TrafficRecorder

    monkeypatch.setenv("TIERSERVE_DB_URL", f"sqlite:///{tmp_path}/keys.db")
    from app.config.schema import TierserveConfig

    data = load_config("local-cpu").model_dump()
    data["routing"]["feedback"].update(enabled=True, flush_s=60)  # no periodic flush before shutdown
    recorder = TrafficRecorder(TierserveConfig.model_validate(data))
    assert recorder.active
    req = RouteRequest(request_id="r2", endpoint="chat", model="auto", team="red", prompt_text="hi")

    async def run() -> bool:
        recorder.observe(req, RouteDecision(tier="fast", reason="score", score=0.1, scorer_version="v"))
        return await recorder.close(2.0)  # the replica shuts down right after the decision
    assert asyncio.run(run()) is True
    store = TrafficStore(f"sqlite:///{tmp_path}/keys.db")
    assert store.find("r2") is not None
    store.close()


def test_live_routing_settings_round_trip_and_refuse_others():
    config = load_config("local-cpu")
    uc = router_user_config(config)
    assert apply_router_user_config(config, uc).routing == config.routing
    uc["routing"]["learned"]["shadow_artifact"] = "x.json"
    assert apply_router_user_config(config, uc).routing.learned.shadow_artifact == "x.json"
    with pytest.raises(ValueError):
        apply_router_user_config(config, {"routing": {"rules": []}})


def test_set_learned_edits_the_block_keeping_the_rest(tmp_path):
    path = tmp_path / "routing.yaml"
    path.write_text("threshold: 0.2  # calibrated\nlearned:\n  enabled: true\n  artifact: a.json\n"
                    "affinity:\n  enabled: true\n")
    set_learned(path, "artifact", "b.json")
    set_learned(path, "shadow_artifact", "c.json")
    assert path.read_text() == ("threshold: 0.2  # calibrated\nlearned:\n  shadow_artifact: c.json\n"
                                "  enabled: true\n  artifact: b.json\naffinity:\n  enabled: true\n")
    set_learned(path, "shadow_artifact", None)
    assert "shadow_artifact" not in path.read_text() and "artifact: b.json" in path.read_text()
    nested = tmp_path / "profile.yaml"
    nested.write_text("routing:\n  learned:\n    artifact: a.json\n  threshold: 0.3\n")
    set_learned(nested, "artifact", "z.json")
    assert nested.read_text() == "routing:\n  learned:\n    artifact: z.json\n  threshold: 0.3\n"
