"""Learning from traffic end to end on a private stack (real Ray Serve, real vLLM tiers):
labelled prompts go through `model: auto`, POST /v1/feedback labels each answer, `route-train
--from-feedback` fits a candidate on the shared data plus that traffic, `route-promote --shadow`
runs it beside the live scorer, `route-eval --shadow` compares them on the new traffic, and
`route-promote` makes it live: a rolling update of the router alone (same replicas, tiers
untouched), after which decisions carry the candidate's version. The router's user_config
carries the candidate, so the promotion reaches a router without the file: it is moved away
before the deploy, and a router replica started afterwards (killed, Serve replaces it) is built
from the user_config too, though the configs it is built with name the missing file."""

from __future__ import annotations

import json
import os
import shutil
import signal
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from app.config.loader import REPO_ROOT, load_config
from app.keys.traffic import TrafficStore
from tooling.cli import main
from tooling.local_cluster import LocalStack
from tooling.routing.training.data import DEFAULT_DATA_DIR, Row, load_rows

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def learning_stack() -> Iterator[tuple[LocalStack, Path]]:
    """The local-cpu profile from a copy of configs/ with feature recording on (the copy is
    what route-promote edits), on a stack of its own."""
    from tooling.local_cluster import start_private_stack, stop

    os.environ.setdefault("RAY_AUTH_MODE", "token")  # Ray's clients read it once, at import
    temp_dir = Path(tempfile.mkdtemp(prefix="tsl-", dir="/tmp"))  # short: Ray's unix sockets
    shutil.copytree(REPO_ROOT / "configs", temp_dir / "configs")
    routing = temp_dir / "configs" / "routing.yaml"
    routing.write_text(routing.read_text() + "feedback:\n  record_features: true\n  flush_s: 0.3\n")
    saved = {k: os.environ.get(k) for k in ("TIERSERVE_CONFIG_DIR", "TIERSERVE_DB_URL")}
    os.environ["TIERSERVE_CONFIG_DIR"] = str(temp_dir / "configs")  # reaches the replicas too
    stack = None
    try:
        stack = start_private_stack("local-cpu", str(temp_dir))
        yield stack, temp_dir
    finally:
        if stack is not None:
            stop(stack)
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        shutil.rmtree(temp_dir, ignore_errors=True)


def _prompts(n: int) -> list[Row]:
    """Short MMLU prompts, half that only the strong model answered, half the weak one did."""
    rows = [r for r in load_rows(DEFAULT_DATA_DIR) if r.source == "mmlu" and len(r.prompt) < 700]
    hard = [r for r in rows if r.needs_strong][: n // 2]
    easy = [r for r in rows if r.weak_ok][: n - len(hard)]
    return [r for pair in zip(hard, easy, strict=False) for r in pair]


def _ask(client: httpx.Client, rid: str, prompt: str) -> tuple[str, str]:
    r = client.post("/v1/chat/completions", headers={"x-request-id": rid},
                    json={"model": "auto", "max_tokens": 1,
                          "messages": [{"role": "user", "content": prompt}]})
    assert r.status_code == 200, r.text
    return r.headers["x-tierserve-tier"], r.headers["x-tierserve-route-reason"]


def _replicas(stack: LocalStack) -> dict[str, set[str]]:
    os.environ.setdefault("RAY_AUTH_MODE", "token")
    from ray.dashboard.modules.serve.sdk import ServeSubmissionClient

    details = ServeSubmissionClient(stack.dashboard_url).get_serve_details()
    deps = details["applications"]["tierserve"]["deployments"]
    return {name: {r["replica_id"] for r in d.get("replicas") or [] if r["state"] == "RUNNING"}
            for name, d in deps.items()}


def _router_pids(stack: LocalStack) -> dict[str, int]:
    from ray.dashboard.modules.serve.sdk import ServeSubmissionClient

    details = ServeSubmissionClient(stack.dashboard_url).get_serve_details()
    router = details["applications"]["tierserve"]["deployments"]["router"]
    return {r["replica_id"]: r["pid"] for r in router.get("replicas") or [] if r["state"] == "RUNNING"}


def _wait_records(db: TrafficStore, client: httpx.Client, rows: list[Row], prefix: str,
                  ok, timeout_s: float = 90) -> list:
    """Send `rows` (again, under new ids) until their records satisfy `ok` (a rollout or a
    reconfigure reaches the router within seconds)."""
    deadline = time.monotonic() + timeout_s
    attempt = 0
    while True:
        attempt += 1
        ids = [f"{prefix}-{attempt}-{i}" for i in range(len(rows))]
        for rid, row in zip(ids, rows, strict=True):
            _ask(client, rid, row.prompt)
        time.sleep(1.5)  # the router's write batch
        records = [db.find(rid) for rid in ids]
        if all(r is not None for r in records) and all(ok(r) for r in records):
            return records
        assert time.monotonic() < deadline, f"records never satisfied the check: {records[-1]}"


def test_feedback_retrain_shadow_promote(learning_stack, capsys):
    stack, temp = learning_stack
    db_url = f"sqlite:///{temp}/keys.db"
    serve_config = temp / "serve_config.yaml"
    rows = _prompts(16)
    client = httpx.Client(base_url=stack.base_url, timeout=120)

    # 1. Traffic and its labels (what each model got right, as a user would report it).
    asked = {f"fb-{i}": _ask(client, f"fb-{i}", r.prompt) for i, r in enumerate(rows)}
    for i, row in enumerate(rows):
        outcome = "needed_stronger" if row.needs_strong else "fine"
        r = client.post("/v1/feedback", json={"request_id": f"fb-{i}", "outcome": outcome})
        tier, reason = asked[f"fb-{i}"]
        if reason == "router_timeout":  # the ingress gave up on the router: no decision recorded
            assert r.status_code == 404, r.text
            continue
        assert r.status_code == 200, r.text
        assert r.json()["tier"] == tier
    routed = [rid for rid, (_, reason) in asked.items() if reason != "router_timeout"]
    assert len(routed) >= 8, asked  # a busy machine may time a few decisions out, not most
    first = routed[0]
    bad = client.post("/v1/feedback", json={"request_id": first, "outcome": "great"})
    assert bad.status_code == 400 and bad.json()["error"]["param"] == "outcome"
    missing = client.post("/v1/feedback", json={"request_id": "never-sent", "outcome": "fine"})
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "request_not_found"
    db = TrafficStore(db_url)
    live_version = db.find(first).scorer_version
    shipped = Path(load_config("local-cpu").routing.learned.artifact).name  # the configured scorer
    assert live_version.startswith(f"{shipped}@") and db.find(first).features is not None

    # 2. A candidate trained on the shared data plus the labelled traffic.
    candidate = temp / "candidate.json"
    assert main(["route-train", "--from-feedback", db_url, "--out", str(candidate)]) == 0
    meta = json.loads(candidate.read_text())["meta"]
    used = int(capsys.readouterr().out.split("feedback: ")[1].split()[0])
    assert used > 0 and meta["n_feedback"] == used

    # 3. The candidate in shadow: the router is reconfigured in place, nothing restarts.
    before = _replicas(stack)
    assert main(["route-promote", str(candidate), "--shadow", "--serve-config", str(serve_config),
                 "--deploy", stack.dashboard_url]) == 0
    shadowed = _wait_records(db, client, rows, "sh", lambda r: r.shadow_version is not None)
    assert {r.scorer_version for r in shadowed} == {live_version}  # the live scorer still decides
    cand_version = shadowed[0].shadow_version
    assert cand_version.startswith("candidate.json@")
    assert all(0 <= r.shadow_score <= 1 and r.shadow_tier for r in shadowed)
    for record, row in zip(shadowed, rows, strict=True):  # label the shadowed traffic too
        outcome = "needed_stronger" if row.needs_strong else "fine"
        r = client.post("/v1/feedback", json={"request_id": record.request_id, "outcome": outcome})
        assert r.status_code == 200, r.text
    capsys.readouterr()
    assert main(["route-eval", "--shadow", "--db", db_url, "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["n"] >= len(rows) and report["shadow_versions"] == [cand_version]
    assert report["n_labelled"] > 0 and 0 <= report["agreement"] <= 1

    # 4. Promote, then deploy with the candidate gone from the router's node: decisions carry
    # its version all the same (from the user_config); same replicas everywhere.
    assert main(["route-promote", str(candidate), "--serve-config", str(serve_config)]) == 0
    assert "carries" in capsys.readouterr().out
    routing = (temp / "configs" / "routing.yaml").read_text()
    assert f"artifact: {candidate}" in routing and "shadow_artifact" not in routing
    candidate.rename(temp / "elsewhere.json")
    from tooling.local_cluster import engine_env, run_ray_cli

    serve = str(Path(sys.executable).with_name("serve"))
    run_ray_cli([serve, "deploy", str(serve_config), "--address", stack.dashboard_url], engine_env(),
                "serve deploy")
    promoted = _wait_records(db, client, rows, "pr", lambda r: r.scorer_version == cand_version)
    assert all(r.shadow_version is None for r in promoted)
    after = _replicas(stack)
    assert after == before, "a promotion restarted replicas"
    assert after["tier-fast"] and after["tier-reasoning"] and after["router"]

    # 5. A router replica started now: its configs name the missing file, its user_config
    # carries it. Kill the running one (ours, by pid); Serve starts another.
    old = _router_pids(stack)
    for pid in old.values():
        os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + 120
    while not (set(_router_pids(stack)) - set(old)):
        assert time.monotonic() < deadline, "no new router replica"
        time.sleep(1)
    assert not candidate.exists()
    _wait_records(db, client, rows, "re", lambda r: r.scorer_version == cand_version)
    db.close()
