"""Simulated clients of the load generators (loadtests/clients.py): who gets which identity,
keys created and revoked on a real SQLite keys store, the elastic bench's streams each
sending with their own key, and a real locust run whose users do the same. The HTTP
server on the other side is a stand-in: what is under test is the load generator."""

from __future__ import annotations

import asyncio
import json
import os
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import pytest

from app.keys.store import KeyStore
from loadtests.bench.elastic import ElasticPlan, Load, Request, ttft_stats
from loadtests.clients import KEYS_ENV, TEAM, ClientPool, client_keys, keys_from_env
from loadtests.records import read_records


def test_pool_gives_each_running_client_its_own_identity_as_clients_come_and_go():
    pool = ClientPool(4)
    held = [pool.acquire() for _ in range(3)]
    assert held == [0, 1, 2]
    pool.release(1)  # a ramp stops a user ...
    assert pool.acquire() == 1  # ... the next one started takes the identity it freed
    assert pool.acquire() == 3 and pool.holders == [1, 1, 1, 1]
    # More clients than identities: shared, but evenly (the least-held first).
    assert [pool.acquire() for _ in range(5)] == [0, 1, 2, 3, 0]
    assert pool.holders == [3, 2, 2, 2]
    with pytest.raises(ValueError, match="not held"):
        ClientPool(2).release(0)
    with pytest.raises(ValueError):
        ClientPool(0)


def test_a_ramp_never_shares_an_identity_while_clients_fit():
    pool, running = ClientPool(12), []
    for users in (2, 12, 12, 2, 8, 12, 1):
        while len(running) < users:
            running.append(pool.acquire())
        while len(running) > users:
            pool.release(running.pop(0))  # which user stops is the runner's business
        assert sorted(running) == sorted(set(running)) and max(pool.holders) == 1


def test_client_keys_are_created_in_the_store_and_revoked_after(tmp_path):
    store = KeyStore(f"sqlite:///{tmp_path}/keys.db")
    with client_keys(store, 3, "lt-test") as keys:
        assert len(set(keys)) == 3
        infos = [store.lookup(k) for k in keys]
        assert all(i is not None and i.team == TEAM for i in infos)
        assert sorted(i.name for i in infos) == ["lt-test-client-0", "lt-test-client-1", "lt-test-client-2"]
        assert all(i.rpm is None and i.tpm is None for i in infos)  # only the per-caller limit
    assert all(store.lookup(k) is None for k in keys)  # revoked
    assert store.count() == 3  # ... and still counted: the API stays keyed
    assert keys_from_env({KEYS_ENV: ",".join(keys)}) == keys and keys_from_env({}) == []


def test_elastic_streams_send_with_one_key_each_and_429s_are_counted_apart():
    seen: list[str] = []
    sse = 'data: {"choices": [{"delta": {"content": "a"}}]}\n\ndata: [DONE]\n\n'

    def handler(request: httpx.Request) -> httpx.Response:
        key = request.headers.get("authorization", "")
        seen.append(key)
        if key.endswith("k0") and seen.count(key) % 2:  # this client went over its limit
            return httpx.Response(429, json={"error": {"code": "rate_limit_exceeded"}})
        return httpx.Response(200, text=sse)

    async def go() -> Load:
        load = Load("http://127.0.0.1/v1/chat/completions", "tiny-fast", "hi", 4, ["k0", "k1", "k2", "k3"])
        async with httpx.AsyncClient(transport=httpx.MockTransport(handler)) as client:
            load.resize(3, client)
            await asyncio.sleep(0.3)
            load.resize(1, client)  # two stop; their keys go back to the pool
            await asyncio.sleep(0.1)
            load.resize(3, client)
            await asyncio.sleep(0.3)
            await load.drain(5)
        return load

    load = asyncio.run(go())
    assert set(seen) == {"Bearer k0", "Bearer k1", "Bearer k2"}  # never k3: three at most at once
    assert {r.client for r in load.requests} == {0, 1, 2}
    stats = ttft_stats(load.requests, slo_s=1.0)
    assert stats["rate_limited"] == sum(r.status == 429 for r in load.requests) > 0
    assert stats["slo_misses"] == 0 and stats["clients"] == 3
    assert stats["slo_attainment"] == pytest.approx(1 - stats["rate_limited"] / stats["n"], abs=1e-3)


def test_ttft_stats_tells_slow_answers_from_429s():
    reqs = [Request(sent=0, ttft_s=0.1, done=True, status=200, client=0),
            Request(sent=0, ttft_s=2.0, done=True, status=200, client=1),
            Request(sent=0, status=429, error="rate_limit_exceeded", client=1),
            Request(sent=0, status=503, error="overloaded", client=2)]
    stats = ttft_stats(reqs, slo_s=1.0)
    figures = (stats["n"], stats["rate_limited"], stats["slo_misses"], stats["slo_attainment"])
    assert figures == (4, 1, 2, 0.25)  # the slow answer and the 503 are misses; the 429 apart


def test_elastic_plan_has_a_key_per_stream_by_default():
    assert ElasticPlan().client_count == 12  # the step's 12 streams (the node kill uses 2 * 3)
    assert ElasticPlan(low_concurrency=5, high_concurrency=8).client_count == 12
    assert ElasticPlan(clients=1).client_count == 1


class _Chat(BaseHTTPRequestHandler):
    seen: list[str] = []

    def do_POST(self) -> None:  # noqa: N802 (http.server's name)
        self.rfile.read(int(self.headers["content-length"]))
        self.seen.append(self.headers.get("authorization", ""))
        body = json.dumps({"choices": [{"message": {"content": "hi"}}], "usage": {"completion_tokens": 1}})
        self.send_response(200)
        self.send_header("content-type", "application/json")
        self.send_header("x-tierserve-tier", "fast")
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body.encode())

    def log_message(self, *args) -> None:
        pass


def test_loadtest_cli_clients_run_locust_users_with_keys_made_for_the_run(tmp_path: Path, capsys):
    """`tierserve loadtest ramp --clients 6`: six keys created in the keys database, each
    running locust user sending with its own, all revoked at the end."""
    from tooling.cli import build_parser, main

    assert build_parser().parse_args(["bench", "elastic", "--clients", "1"]).clients == 1
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Chat)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    db = f"sqlite:///{tmp_path}/keys.db"
    try:
        rc = main(["loadtest", "ramp", "--steps", "4,2,4", "--step-s", "1.5", "--no-stream",
                   "--max-tokens", "1", "--clients", "6", "--keys-db", db, "--base-url", f"http://127.0.0.1:{server.server_port}",
                   "--out", str(tmp_path / "out")])
    finally:
        server.shutdown()
    assert rc == 0, capsys.readouterr().out
    assert "6 simulated clients" in capsys.readouterr().out
    (out,) = (tmp_path / "out").iterdir()
    records = read_records(out / "requests.jsonl")
    summary = json.loads((out / "summary.json").read_text())
    assert summary["ok"] > 0 and summary["rate_limited"] == 0 and summary["scenario"]["clients"] == 6
    # Four users at most, two stopped and two started again: the first four identities only
    # (a stopped user's key goes to the next one started), each user with its own key.
    assert {r.client for r in records} == {0, 1, 2, 3} and summary["clients"] == 4
    assert len(set(_Chat.seen)) == 4 and all(a.startswith("Bearer tsk-") for a in _Chat.seen)
    store = KeyStore(db)
    listed = store.list(TEAM, include_revoked=True)
    assert len(listed) == 6 and all(not k.active for k in listed)
    assert KEYS_ENV not in os.environ
