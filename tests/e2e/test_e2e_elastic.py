"""Elastic tiers on a real multi-node Ray cluster on loopback (tooling/cluster.py): a head that runs
no model (only the ingress and router, pool_system) and three worker nodes (pool_fast,
pool_reasoning, pool_fast), started by the fixture
with its own ports and temp dir and stopped by PID; real vLLM on the CPU with the tiny models.

Profile local-elastic (fast 1 -> 2 replicas, reasoning 0 -> 1) plus, in a copy of configs/,
a suspended tier `batch` (max_replicas 0) that a forced rule sends `nightly-batch` prompts to.
At most three engines run at once. Tests run in file order and share the cluster.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import psutil
import pytest
import yaml

from app.config import load_config
from app.config.schema import TierserveConfig
from tests.conftest import sse_events
from tooling import local_cluster as lc
from tooling.cluster import WorkerNode, kill_node, start_cluster
from tooling.tier_replicas import TierReplica, cluster_nodes, tier_replicas

pytestmark = pytest.mark.e2e

REPO = Path(__file__).resolve().parents[2]
PROFILE = "local-elastic"


@dataclass
class Cluster:
    stack: lc.LocalStack
    config: TierserveConfig
    workers: list[WorkerNode]
    log: list[str] = field(default_factory=list)

    @property
    def base(self) -> str:
        return self.stack.base_url

    def replicas(self, tier: str | None = None) -> list[TierReplica]:
        reps = tier_replicas(self.stack.dashboard_url, self.config)
        return [r for r in reps if tier is None or r.tier == tier]

    def wait_for(self, what: str, check, timeout_s: float, every_s: float = 2):
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            try:
                if got := check():
                    return got
            except Exception as exc:  # the dashboard may be busy; ask again
                self.log.append(f"{what}: {exc!r}")
            time.sleep(every_s)
        raise AssertionError(f"{what} not within {timeout_s:.0f}s; replicas: {self.replicas()}")


def _config_dir(tmp: Path) -> Path:
    """configs/ plus a suspended tier `batch` and a forced rule that sends `nightly-batch` to it."""
    root = tmp / "configs"
    shutil.copytree(REPO / "configs", root)
    path = root / "profiles" / f"{PROFILE}.yaml"
    profile = yaml.safe_load(path.read_text())
    fast = next(t for t in profile["tiers"] if t["name"] == "fast")
    profile["tiers"].append({**fast, "name": "batch", "served_model_name": "tiny-batch",
                             "description": "suspended: max_replicas 0",
                             "autoscaling": {"min_replicas": 0, "max_replicas": 0},
                             "resources": {**fast["resources"], "node_pool": "pool_fast"}})
    profile.setdefault("routing", {})["rules"] = [
        {"name": "nightly-batch", "tier": "batch", "force": True, "match": {"patterns": ["nightly-batch"]}},
        {"name": "short-prompt", "tier": "fast", "match": {"max_prompt_tokens": 12}}]
    path.write_text(yaml.safe_dump(profile, sort_keys=False))
    return root


@pytest.fixture(scope="module")
def cluster() -> Iterator[Cluster]:
    temp_dir = tempfile.mkdtemp(prefix="tse-", dir="/tmp")  # short: Ray's unix sockets
    saved = {k: os.environ.get(k) for k in ("TIERSERVE_CONFIG_DIR", "TIERSERVE_DB_URL")}
    # Reaches every replica through the raylets' env: the copy of configs/, an empty keys DB.
    os.environ["TIERSERVE_CONFIG_DIR"] = str(_config_dir(Path(temp_dir)))
    config = load_config(PROFILE)
    os.environ[config.server.keys.db_url_env] = f"sqlite:///{temp_dir}/keys.db"
    stack = lc.LocalStack(gcs_port=lc.free_port(), dashboard_port=lc.free_port(),
                          metrics_port=lc.free_port(), serve_port=lc.free_port(),
                          haproxy_metrics_port=lc.free_port(), haproxy_stats_port=lc.free_port(),
                          temp_dir=temp_dir)
    head_ids: list[str] = []
    try:
        _, workers = start_cluster(config, stack, nodes=3)
        head_ids = [n.node_id for n in cluster_nodes(stack.dashboard_url) if n.is_head]
        lc.wait_ready(stack.base_url, 900)
        # The router reads Serve's replica states every health_poll_s: let it see the tiers that
        # just became ready, or its first `auto` decisions avoid them.
        time.sleep(3 * config.routing.fallback.health_poll_s)
        yield Cluster(stack, config, workers)
    finally:
        lc.stop(stack)
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        if keep := os.environ.get("TIERSERVE_TEST_KEEP_LOGS"):
            shutil.copytree(Path(temp_dir) / "session_latest" / "logs", keep, dirs_exist_ok=True)
        shutil.rmtree(temp_dir, ignore_errors=True)
        for node_id in head_ids:  # HAProxy's config and sockets, kept per Ray node id
            shutil.rmtree(Path("/tmp/haproxy-serve") / node_id, ignore_errors=True)


def _chat(base: str, content: str, model: str = "auto", max_tokens: int = 8, stream: bool = True,
          timeout: float = 300, **extra) -> httpx.Response:
    body = {"model": model, "stream": stream, "max_tokens": max_tokens,
            "messages": [{"role": "user", "content": content}], **extra}
    return httpx.post(f"{base}/v1/chat/completions", json=body, timeout=timeout)


def _readyz_if_ready(base: str) -> dict | None:
    body = httpx.get(f"{base}/readyz", timeout=10).json()
    return body if body["ready"] else None


def _done(resp: httpx.Response) -> bool:
    return resp.status_code == 200 and sse_events(resp.content)[-1] == "[DONE]"


def test_each_tier_runs_on_its_pool_and_the_head_runs_no_model(cluster: Cluster) -> None:
    nodes = cluster_nodes(cluster.stack.dashboard_url)
    head = [n for n in nodes if n.is_head]
    # The head advertises only the ingress's and router's pool: no model runs there.
    assert len(head) == 1 and head[0].pools == ["pool_system"]
    assert sorted(p for n in nodes for p in n.pools if not n.is_head) == ["pool_fast", "pool_fast",
                                                                        "pool_reasoning"]
    pools = {n.node_id: n.pools for n in nodes}
    # Serve may still be replacing a replica it lost (memory pressure in a busy CI run): wait
    # for one RUNNING fast replica rather than read the state once.
    fast = cluster.wait_for("one RUNNING fast replica", lambda: [
        r for r in cluster.replicas("fast") if r.state == "RUNNING"], timeout_s=240)
    assert len(fast) == 1 and fast[0].node_pool == "pool_fast"
    assert pools[fast[0].node_id] == ["pool_fast"]
    assert cluster.replicas("reasoning") == [] and cluster.replicas("batch") == []
    ready = cluster.wait_for("ready", lambda: _readyz_if_ready(cluster.base), timeout_s=60)
    assert ready == {"ready": True, "tiers": {"fast": "ready", "reasoning": "scale-to-zero",
                                              "batch": "suspended"}, "router": "ready"}


def test_a_named_suspended_tier_answers_at_once_naming_it(cluster: Cluster) -> None:
    started = time.monotonic()
    resp = _chat(cluster.base, "hello", model="tiny-batch")
    assert resp.status_code == 503 and time.monotonic() - started < 5
    err = resp.json()["error"]
    assert err["code"] == "tier_suspended" and "'batch'" in err["message"] and err["param"] == "model"
    assert set(err) == {"message", "type", "param", "code"} and "retry-after" in resp.headers
    assert cluster.replicas("batch") == []


def test_a_request_to_a_tier_at_zero_waits_for_its_cold_start(cluster: Cluster) -> None:
    assert cluster.replicas("reasoning") == []
    started = time.monotonic()
    resp = _chat(cluster.base, "Explain entropy.", model="tiny-reasoning", max_tokens=16)
    cold_start_s = time.monotonic() - started
    assert _done(resp), resp.text
    assert resp.headers["x-tierserve-tier"] == "reasoning"
    # It was a real cold start (longer than the 30 s first-token timeout would have allowed
    # is likely, but not asserted: no timing assertions), and the replica is on its pool.
    print(f"cold start from zero, request to first answer: {cold_start_s:.1f}s")
    reps = cluster.replicas("reasoning")
    assert [(r.state, r.node_pool) for r in reps] == [("RUNNING", "pool_reasoning")]


def test_auto_is_served_with_each_tier_on_its_pool_and_skips_the_suspended_tier(cluster: Cluster) -> None:
    resp = _chat(cluster.base, "hi there")
    assert _done(resp), resp.text
    assert resp.headers["x-tierserve-tier"] == "fast"
    auto = _chat(cluster.base, "run the nightly-batch job summary please")
    assert _done(auto), auto.text
    assert auto.headers["x-tierserve-tier"] == "fast", auto.headers.get("x-tierserve-route-reason")
    assert cluster.replicas("batch") == []
    placed = {(r.tier, r.node_pool) for r in cluster.replicas() if r.state == "RUNNING"}
    assert ("fast", "pool_fast") in placed
    assert placed <= {("fast", "pool_fast"), ("reasoning", "pool_reasoning")}  # reasoning: if warm


@pytest.mark.skipif(not shutil.which("chromium"), reason="Debian's chromium is not installed")
def test_the_ray_dashboard_serve_view_shows_the_tiers(cluster: Cluster, tmp_path: Path) -> None:
    """The Serve view in headless Chromium, logged in with the cluster's token (Ray 2.60's
    cookie); saved to docs/img/ with TIERSERVE_SCREENSHOTS=1 (the README's)."""
    from playwright.sync_api import sync_playwright

    token = lc.auth_token_path().read_text().strip()
    out = REPO / "docs" / "img" if os.environ.get("TIERSERVE_SCREENSHOTS") else tmp_path
    out.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=shutil.which("chromium"), args=["--no-sandbox"],
                                    headless=True)
        try:
            context = browser.new_context(viewport={"width": 1400, "height": 900})
            context.add_cookies([{"name": "ray-authentication-token", "value": token,
                                  "url": cluster.stack.dashboard_url}])
            page = context.new_page()
            page.set_default_timeout(60_000)
            page.goto(f"{cluster.stack.dashboard_url}/#/serve/applications/tierserve")
            page.get_by_text("tier-reasoning").first.wait_for()
            page.get_by_text("tier-fast").first.wait_for()
            page.wait_for_timeout(1500)  # let the replica counts render
            page.screenshot(path=str(out / "ray-dashboard-serve.png"), full_page=True)
        finally:
            browser.close()
    assert (out / "ray-dashboard-serve.png").stat().st_size > 10_000


@dataclass
class _Outcome:
    sent_at: float
    first_byte_at: float | None = None
    status: int | None = None
    done: bool = False
    error: str | None = None
    error_event: bool = False  # the stream ended in an OpenAI-style error event, not a cut


def _streamer(base: str, stop: threading.Event, out: list[_Outcome]) -> None:
    body = {"model": "auto", "stream": True, "max_tokens": 24, "min_tokens": 24,
            "messages": [{"role": "user", "content": "hi"}]}
    with httpx.Client(timeout=300) as client:
        while not stop.is_set():
            rec = _Outcome(sent_at=time.monotonic())
            out.append(rec)
            try:
                with client.stream("POST", f"{base}/v1/chat/completions", json=body) as resp:
                    rec.status = resp.status_code
                    raw = b""
                    for chunk in resp.iter_bytes():
                        if rec.first_byte_at is None:
                            rec.first_byte_at = time.monotonic()
                        raw += chunk
                events = sse_events(raw)
                rec.error_event = any(isinstance(e, dict) and "error" in e for e in events)
                rec.done = resp.status_code == 200 and events[-1] == "[DONE]" and not rec.error_event
            except Exception as exc:
                rec.error = repr(exc)
            time.sleep(0.2)


def test_a_worker_node_kill_loses_no_unstarted_request(cluster: Cluster) -> None:
    (victim,) = cluster.replicas("fast")
    assert victim.pid is not None
    raylet = next(p for p in psutil.Process(victim.pid).parents() if p.name() == "raylet")
    assert raylet.pid in {w.raylet_pid for w in cluster.workers if w.spec.pool == "pool_fast"}
    stop, outcomes = threading.Event(), []
    threads = [threading.Thread(target=_streamer, args=(cluster.base, stop, outcomes)) for _ in range(3)]
    for t in threads:
        t.start()
    try:
        time.sleep(5)
        killed_at = time.monotonic()
        assert kill_node(raylet.pid)

        def rescheduled() -> TierReplica | None:
            return next((r for r in cluster.replicas("fast") if r.state == "RUNNING"
                         and r.node_id != victim.node_id), None)

        moved = cluster.wait_for("fast replica rescheduled on the other pool_fast node", rescheduled, 300)
        recovered_s = time.monotonic() - killed_at
        time.sleep(3)
    finally:
        stop.set()
        for t in threads:
            t.join(timeout=330)
    assert moved.node_pool == "pool_fast"
    print(f"node kill -> fast replica serving on another pool_fast node: {recovered_s:.1f}s; "
          f"{len(outcomes)} requests")
    unstarted = [o for o in outcomes if o.first_byte_at is None or o.first_byte_at >= killed_at]
    # A request whose stream began on the dying node (its worker outlives the raylet for a
    # moment) is a started stream: the serving path's rules allow it an error event (seen
    # once under CI load, when its migration found no tier in time), never a cut or a hang.
    began_on_dying_node = [o for o in unstarted if o.error_event and o.status == 200]
    lost = [o for o in unstarted if not o.done and o not in began_on_dying_node]
    print(f"{len(began_on_dying_node)} streams began on the dying node and ended in an error event")
    assert len(unstarted) >= 3 and not lost, lost
    # Started streams follow the serving path's rules (migration or an error event), never a hang.
    assert all(o.status is not None or o.error for o in outcomes)


def test_fast_scales_up_under_load_and_back_down(cluster: Cluster) -> None:
    assert len([r for r in cluster.replicas("fast") if r.state == "RUNNING"]) == 1
    stop, outcomes = threading.Event(), []
    threads = [threading.Thread(target=_streamer, args=(cluster.base, stop, outcomes)) for _ in range(8)]
    for t in threads:
        t.start()
    try:
        two = cluster.wait_for("a second fast replica RUNNING", lambda: len(
            [r for r in cluster.replicas("fast") if r.state == "RUNNING"]) == 2, 240)
        assert two
        assert {r.node_pool for r in cluster.replicas("fast")} == {"pool_fast"}
    finally:
        stop.set()
        for t in threads:
            t.join(timeout=330)
    assert all(o.done for o in outcomes if o.error is None and o.status is not None), \
        [o for o in outcomes if not o.done][:3]
    cluster.wait_for("fast back to one replica", lambda: len(
        [r for r in cluster.replicas("fast") if r.state == "RUNNING"]) == 1
        and len(cluster.replicas("fast")) == 1, 180)
