"""Virtual keys end to end: a second ingress app ("teams", 2 replicas, keys required) on the
session cluster, in front of the session's real router and vLLM tiers, with a real
PostgreSQL keys database and real Redis counters; the official openai SDK as the client."""

from __future__ import annotations

import json
import secrets
import subprocess
import sys
import time
import uuid
from pathlib import Path

import httpx
import openai
import pytest

from tests.servers import PG_BIN, PG_MISSING, REDIS, postgres_server, redis_server

pytestmark = [pytest.mark.e2e,
              pytest.mark.skipif(PG_BIN is None or REDIS is None, reason=PG_MISSING)]
APP, PREFIX = "teams", "/teams"
ADMIN = "adm-" + secrets.token_urlsafe(24)
HARD = "Prove step by step that the square root of 2 is irrational."


def with_keys(config, **keys):
    return config.model_copy(update={"server": config.server.model_copy(
        update={"keys": config.server.keys.model_copy(update=keys)})})


@pytest.fixture(scope="module")
def teams(tierserve_stack, tmp_path_factory):
    from ray import serve

    from app.config import load_config
    from deployments.ingress import Ingress

    with postgres_server() as (db_url, _), \
            redis_server(str(tmp_path_factory.mktemp("redis"))) as (redis_url, _):
        config = with_keys(load_config("local-cpu"), auth="keys")
        tiers = {t.name: serve.get_deployment_handle(t.deployment_name, app_name="tierserve")
                 for t in config.tiers}
        router = serve.get_deployment_handle("router", app_name="tierserve")
        env = {"TIERSERVE_DB_URL": db_url, "TIERSERVE_REDIS_URL": redis_url,
               "TIERSERVE_ADMIN_KEYS": ADMIN}
        app = serve.deployment(Ingress, name="teams-ingress", num_replicas=2,
                               ray_actor_options={"num_cpus": 0, "runtime_env": {"env_vars": env}}
                               ).bind(config, router, tiers)
        serve.run(app, name=APP, route_prefix=PREFIX)
        try:
            yield {"base": tierserve_stack.base_url + PREFIX, "db": db_url, "stack": tierserve_stack}
        finally:
            serve.delete(APP)


def cli(*args: str) -> str:
    out = subprocess.run([str(Path(sys.executable).with_name("tierserve")), *args],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    return out.stdout


def new_key(teams, team: str, *flags: str) -> tuple[str, str]:
    created = json.loads(cli("keys", "create", "--team", team, "--name", uuid.uuid4().hex[:8],
                             *flags, "--db", teams["db"], "--json"))
    return created["key"], created["info"]["id"]


def client(teams, key: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=teams["base"] + "/v1", api_key=key, max_retries=0, timeout=120)


def chat(c: openai.OpenAI, text: str = "Hi there", model: str = "auto", max_tokens: int = 4,
         rid: str | None = None):
    return c.chat.completions.with_raw_response.create(
        model=model, messages=[{"role": "user", "content": text}], max_tokens=max_tokens,
        extra_headers={"x-request-id": rid} if rid else None)


def admin(teams, method: str, path: str, key: str = ADMIN, **kw) -> httpx.Response:
    headers = {"authorization": f"Bearer {key}"} if key else {}
    return httpx.request(method, teams["base"] + path, headers=headers, timeout=60, **kw)


def test_cli_key_works_with_the_openai_sdk(teams):
    key, _ = new_key(teams, "search", "--rpm", "100", "--tpm", "100000")
    raw = chat(client(teams, key))
    assert raw.http_response.status_code == 200 and raw.parse().usage.completion_tokens > 0
    h = raw.headers
    assert h["x-ratelimit-limit-requests"] == "100" and h["x-ratelimit-limit-tokens"] == "100000"
    assert int(h["x-ratelimit-remaining-requests"]) <= 99 and h["x-ratelimit-reset-requests"]
    with pytest.raises(openai.AuthenticationError) as err:
        chat(client(teams, key + "x"))
    assert err.value.code == "invalid_api_key"


def test_the_session_app_stays_open_and_its_admin_api_is_off(tierserve_stack):
    r = httpx.get(tierserve_stack.base_url + "/admin/keys", timeout=30)
    assert r.status_code == 403 and r.json()["error"]["code"] == "admin_disabled"


def test_admin_api_guarded_documented_and_crud(teams):
    team_key, _ = new_key(teams, "search")
    for key in (team_key, "", "wrong"):
        r = admin(teams, "GET", "/admin/keys", key=key)
        assert r.status_code == 401 and set(r.json()["error"]) == {"message", "type", "param", "code"}
    r = admin(teams, "POST", "/admin/keys", json={"team": "ads", "name": "api", "rpm": 7})
    assert r.status_code == 201, r.text
    created = r.json()
    assert created["key"].startswith("tsk-") and created["info"]["rpm"] == 7
    kid = created["info"]["id"]
    assert admin(teams, "GET", f"/admin/keys/{kid}").json()["team"] == "ads"
    assert any(k["id"] == kid for k in admin(teams, "GET", "/admin/keys?team=ads").json())
    bad = admin(teams, "POST", "/admin/keys", json={"team": "ads", "name": "x", "rpm": -1})
    assert bad.status_code == 400 and bad.json()["error"]["param"] == "rpm"
    assert admin(teams, "GET", "/admin/keys/key_nope").status_code == 404
    rotated = admin(teams, "POST", f"/admin/keys/{kid}/rotate").json()
    assert rotated["key"] != created["key"]
    assert admin(teams, "DELETE", f"/admin/keys/{kid}").json()["revoked_at"] is not None
    spec = httpx.get(teams["base"] + "/openapi.json", timeout=30).json()
    for path in ("/admin/keys", "/admin/keys/{key_id}", "/admin/keys/{key_id}/rotate", "/admin/usage"):
        assert path in spec["paths"]


def test_revocation_reaches_every_replica_within_2s(teams):
    key, kid = new_key(teams, "search")
    c = client(teams, key)
    for _ in range(4):  # both replicas have it cached
        chat(c, max_tokens=1)
    assert admin(teams, "DELETE", f"/admin/keys/{kid}").status_code == 200
    revoked_at = time.monotonic()
    first_refusal = None
    while time.monotonic() - revoked_at < 2.0:
        try:
            chat(c, max_tokens=1)
        except openai.AuthenticationError:
            first_refusal = first_refusal or time.monotonic() - revoked_at
    print(f"\nrevocation: first 401 after {first_refusal:.3f}s" if first_refusal else "")
    for _ in range(10):  # from 2 s on, every replica refuses it
        with pytest.raises(openai.AuthenticationError):
            chat(c, max_tokens=1)


def _replicas_that_served(stack, rids: list[str]) -> int:
    """Ingress replicas of the teams app whose log has one of these request ids."""
    served = 0
    for log in stack.log_dir.glob(f"replica_{APP}_*.log"):
        text = log.read_text(errors="replace")
        served += any(rid in text for rid in rids)
    return served


def test_rpm_holds_across_two_ingress_replicas(teams):
    key, _ = new_key(teams, "ads", "--rpm", "5")
    c = client(teams, key)
    ok, refused, rids = 0, [], []
    for _ in range(12):
        rid = f"rpm-{uuid.uuid4().hex}"
        rids.append(rid)
        try:
            chat(c, max_tokens=1, rid=rid)
            ok += 1
        except openai.RateLimitError as exc:
            refused.append(exc)
    assert ok == 5 and len(refused) == 7
    e = refused[0]
    assert e.code == "rate_limit_exceeded" and 1 <= int(e.response.headers["retry-after"]) <= 60
    assert e.response.headers["x-ratelimit-remaining-requests"] == "0"
    time.sleep(1)  # request log lines are flushed by then
    assert _replicas_that_served(teams["stack"], rids) == 2, "both ingress replicas took requests"


def _window_tokens(teams, kid: str) -> int:
    from app.keys.store import KeyStore

    time.sleep(2.5)  # usage is written in batches every second
    store = KeyStore(teams["db"])
    try:
        return sum(store.spent(kid, 0)[:1])
    finally:
        store.close()


def test_tpm_admits_95_to_100_percent_across_replicas(teams):
    limit = 800
    key, kid = new_key(teams, "ads", "--tpm", str(limit))
    c = client(teams, key)
    refused = 0
    while refused < 3:
        try:
            chat(c, "Tell me a short fact about the sea.", max_tokens=16)
        except openai.RateLimitError as exc:
            assert exc.code == "rate_limit_exceeded"
            assert int(exc.response.headers["retry-after"]) <= 60
            refused += 1
    share = _window_tokens(teams, kid) / limit
    print(f"\nTPM accuracy: {share:.3f} of the limit admitted in the window")
    assert 0.95 <= share <= 1.0


def test_budget_stops_within_one_request(teams):
    key, kid = new_key(teams, "ads", "--budget-tokens", "300", "--period", "day")
    c = client(teams, key)
    with pytest.raises(openai.RateLimitError) as err:
        for _ in range(100):
            chat(c, "Name a colour.", max_tokens=16)
    assert err.value.code == "insufficient_quota"
    spent = _window_tokens(teams, kid)
    assert 300 <= spent <= 300 + 60  # at most one request's tokens over


def test_tier_permissions_and_pinning(teams):
    fast_only, _ = new_key(teams, "ads", "--tiers", "fast")
    c = client(teams, fast_only)
    with pytest.raises(openai.PermissionDeniedError) as err:
        chat(c, model="tiny-reasoning")
    assert err.value.code == "tier_not_allowed"
    raw = chat(c, HARD)  # the router wants reasoning; the key keeps it on fast
    assert raw.headers["x-tierserve-tier"] == "fast"
    assert raw.headers["x-tierserve-route-reason"].startswith("key:")
    no_pin, _ = new_key(teams, "ads", "--no-pin")
    with pytest.raises(openai.PermissionDeniedError) as err:
        chat(client(teams, no_pin), model="tiny-fast")
    assert err.value.code == "tier_pin_not_allowed"


def test_usage_reports_cost_and_savings_of_a_mixed_run(teams):
    key, _ = new_key(teams, "mixed")
    c = client(teams, key)
    tiers = [chat(c, text, max_tokens=8).headers["x-tierserve-tier"]
             for text in ["Hi!", "Thanks!", HARD, "Hello there", "Ok"]]
    assert set(tiers) == {"fast", "reasoning"}
    time.sleep(2.5)
    report = json.loads(cli("usage", "--team", "mixed", "--db", teams["db"], "--json"))
    team = report["teams"][0]
    assert team["team"] == "mixed" and team["requests"] == 5
    assert {line["tier"] for line in report["lines"]} == {"fast", "reasoning"}
    assert 0 < team["cost_usd"] < team["strongest_cost_usd"] and team["savings_usd"] > 0
    via_api = admin(teams, "GET", "/admin/usage?team=mixed").json()
    assert via_api["teams"][0]["savings_usd"] == pytest.approx(team["savings_usd"])
    print("\n" + cli("usage", "--team", "mixed", "--db", teams["db"]))
