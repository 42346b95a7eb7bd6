"""The keys database on real SQLite and a real PostgreSQL server (Debian's, started here)."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest
from sqlalchemy import text

from app.keys.migrations import LATEST, VERSION_TABLE
from app.keys.models import KeyCreate, KeyLimits, UsageEvent
from app.keys.store import KeyNotFound, KeyStore
from app.keys.usage import build_report
from tests.servers import database_url


@pytest.fixture(params=["sqlite", "postgresql"])
def store(request, tmp_path):
    s = KeyStore(database_url(request, tmp_path, "tierserve_usage", "tierserve_api_keys"))
    yield s
    s.close()


def test_migrations_are_versioned_and_idempotent(store):
    with store.engine.connect() as conn:
        versions = conn.execute(text(f"SELECT version FROM {VERSION_TABLE}")).scalars().all()
    assert versions == list(range(1, LATEST + 1))
    again = KeyStore(store.url)  # a second replica starting: nothing to apply
    with again.engine.connect() as conn:
        assert conn.execute(text(f"SELECT COUNT(*) FROM {VERSION_TABLE}")).scalar_one() == LATEST
    again.close()


def test_create_lookup_revoke_rotate(store):
    assert store.count() == 0
    created = store.create(KeyCreate(team="search", name="ranker", tiers=["fast"], rpm=10))
    key, info = created.key, created.info
    assert key.startswith("tsk-") and len(key) > 40
    assert info.prefix == key[:12] and info.tiers == ["fast"] and info.rpm == 10
    assert store.lookup(key).id == info.id
    assert store.lookup(key + "x") is None
    assert store.get(info.prefix).id == info.id  # by display prefix too

    rotated = store.rotate(info.id)
    assert rotated.info.id == info.id and rotated.key != key
    assert store.lookup(key) is None and store.lookup(rotated.key).id == info.id

    revoked = store.revoke(info.id)
    assert revoked.revoked_at is not None and store.lookup(rotated.key) is None
    assert store.list() == [] and len(store.list(include_revoked=True)) == 1
    assert store.count() == 1  # revoked keys still count: auth never falls back to open
    with pytest.raises(KeyNotFound):
        store.rotate(info.id)
    with pytest.raises(KeyNotFound):
        store.get("key_nope")


def test_update_limits(store):
    info = store.create(KeyCreate(team="t", name="n")).info
    updated = store.update_limits(info.id, KeyLimits(tpm=500, budget_tokens=10, budget_period="day",
                                                     allow_pin=False))
    assert (updated.tpm, updated.budget_tokens, updated.allow_pin) == (500, 10, False)


def test_usage_spent_and_savings(store):
    a = store.create(KeyCreate(team="search", name="a")).info
    b = store.create(KeyCreate(team="ads", name="b")).info
    now = time.time()

    def ev(key, team, tier, p, c, price, ts=now):
        return UsageEvent(ts=ts, key_id=key.id, team=team, tier=tier, endpoint="chat", status=200,
                          prompt_tokens=p, completion_tokens=c, cost_usd=(p + c) * price / 1000,
                          strongest_cost_usd=(p + c) * 1.0 / 1000)
    store.record_usage([ev(a, "search", "fast", 100, 100, 0.1), ev(a, "search", "fast", 50, 50, 0.1),
                        ev(a, "search", "reasoning", 500, 500, 1.0),
                        ev(b, "ads", "fast", 10, 0, 0.1, ts=now - 86_400 * 40)])
    assert store.spent(a.id, now - 10) == (1300, pytest.approx(0.03 + 1.0))
    report = build_report(store.usage(), "reasoning", None)
    teams = {t.team: t for t in report.teams}
    assert teams["search"].requests == 3 and teams["search"].tokens == 1300
    assert teams["search"].cost_usd == pytest.approx(1.03)
    assert teams["search"].savings_usd == pytest.approx(1.3 - 1.03)
    recent = build_report(store.usage(since=now - 86_400), "reasoning", now - 86_400)
    assert {t.team for t in recent.teams} == {"search"}
    assert {(u.tier, u.requests) for u in store.usage(team="search")} == {("fast", 2), ("reasoning", 1)}


def test_sqlite_file_holds_no_plaintext_key(tmp_path):
    path = tmp_path / "keys.db"
    store = KeyStore(f"sqlite:///{path}")
    keys = [store.create(KeyCreate(team="t", name=f"k{i}")).key for i in range(3)]
    keys.append(store.rotate(store.list()[0].id).key)
    store.close()
    blobs = b"".join(p.read_bytes() for p in tmp_path.iterdir() if p.name.startswith("keys.db"))
    assert blobs  # the file (and its WAL) exist
    for key in keys:
        assert key.encode() not in blobs
        secret = key[len("tsk-"):]
        assert secret[8:].encode() not in blobs  # nothing past the display prefix


def test_postgres_table_and_files_hold_no_plaintext_key(pg):
    url, data_dir = pg
    store = KeyStore(url)
    keys = [store.create(KeyCreate(team="t", name=f"pk{i}")).key for i in range(3)]
    with store.engine.begin() as conn:
        rows = conn.execute(text("SELECT t::text FROM tierserve_api_keys t")).scalars().all()
        conn.execute(text("CHECKPOINT"))
    store.close()
    dump = "\n".join(rows)
    assert len(rows) >= 3
    for key in keys:
        assert key not in dump and key[12:] not in dump
    secrets_ = [key[12:].encode() for key in keys]
    scanned = 0
    for root, _, files in os.walk(data_dir):  # the table's pages, WAL and all
        for name in files:
            try:
                raw = Path(root, name).read_bytes()
            except OSError:
                continue
            scanned += 1
            assert not [s for s in secrets_ if s in raw], Path(root, name)
    assert scanned > 100


def test_usage_recorder_close_writes_the_queued_events(store):
    import asyncio

    from app.keys.usage import UsageRecorder

    info = store.create(KeyCreate(team="search", name="a")).info
    recorder = UsageRecorder(store, flush_s=60, batch_max=2)  # the periodic flush is a minute away

    async def run() -> bool:
        for _ in range(3):
            recorder.add(UsageEvent(ts=time.time(), key_id=info.id, team="search", tier="fast",
                                    endpoint="chat", status=200, prompt_tokens=10, completion_tokens=5,
                                    cost_usd=0.001, strongest_cost_usd=0.01))
        return await recorder.close(2.0)

    assert asyncio.run(run()) is True
    assert {(u.tier, u.requests) for u in store.usage(team="search")} == {("fast", 3)}
