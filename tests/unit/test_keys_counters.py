"""Limit counters: the Redis Lua scripts do exactly what the in-process arithmetic does,
are shared between replicas, and a Redis outage follows the configured policy."""

from __future__ import annotations

import asyncio
import random

import pytest

from app.keys.counters import (
    NEEDS_SEED,
    CountersUnavailable,
    MemoryCounters,
    RedisCounters,
    ResilientCounters,
    make_counters,
)
from tests.servers import REDIS, redis_server
from tooling.local_cluster import free_port

pytestmark = pytest.mark.skipif(REDIS is None, reason="redis-server not installed")
W = 60_000


@pytest.fixture(scope="module")
def redis_url(tmp_path_factory):
    with redis_server(str(tmp_path_factory.mktemp("redis"))) as (url, _):
        yield url


def _run(coro):
    return asyncio.run(coro)


def test_lua_window_matches_python_arithmetic(redis_url):
    async def go():
        rng = random.Random(7)
        mem, red = MemoryCounters(), RedisCounters(redis_url, timeout_s=5)
        try:
            now = 1_000_000
            for _ in range(400):
                now += rng.choice([0, 10, 400, 1_000, 5_000, 30_000])
                cost = rng.choice([0, 1, 5, 20, 60])
                a = await mem.take_window("w-eq", now, W, 100, cost)
                b = await red.take_window("w-eq", now, W, 100, cost)
                assert a == b, (now, cost)
                if a.admitted and cost and rng.random() < 0.3:  # reconcile like a finished request
                    delta = -rng.randint(0, cost)
                    await mem.adjust_window("w-eq", a.bucket, delta, now, W)
                    await red.adjust_window("w-eq", b.bucket, delta, now, W)
        finally:
            await red.close()
    _run(go())


def test_two_replicas_share_one_limit(redis_url):
    async def go():
        r1, r2 = RedisCounters(redis_url, timeout_s=5), RedisCounters(redis_url, timeout_s=5)
        try:
            results = await asyncio.gather(*[
                (r1 if i % 2 else r2).take_window("w-shared", 5_000, W, 10, 1) for i in range(30)])
            assert sum(r.admitted for r in results) == 10
            got = await asyncio.gather(*[(r1 if i % 2 else r2).acquire("c-shared", 3, 60)
                                         for i in range(8)])
            assert sum(ok for ok, _ in got) == 3
            await r1.release("c-shared")
            assert (await r2.acquire("c-shared", 3, 60))[0]
        finally:
            await r1.close()
            await r2.close()
    _run(go())


@pytest.mark.parametrize("kind", ["memory", "redis"])
def test_budget_seeds_once_and_stops_at_limit(kind, redis_url):
    async def go():
        c = MemoryCounters() if kind == "memory" else RedisCounters(redis_url, timeout_s=5)
        name = f"budget:{kind}"
        assert await c.take_budget(name, 100, 10, None, 60) == (False, NEEDS_SEED)
        assert await c.take_budget(name, 100, 10, 85, 60) == (True, 95)
        assert await c.take_budget(name, 100, 10, 0, 60) == (True, 105)  # seed ignored now
        assert (await c.take_budget(name, 100, 1, None, 60))[0] is False
        await c.adjust_budget(name, -10)  # reconciled: the last request used less
        assert await c.take_budget(name, 100, 1, None, 60) == (True, 96)
        if kind == "redis":
            await c.close()
    _run(go())


def test_outage_fail_open_uses_in_process_limits():
    async def go():
        c = ResilientCounters(RedisCounters(f"redis://127.0.0.1:{free_port()}/0"), "fail_open")
        results = [await c.take_window("w", 0, W, 2, 1) for _ in range(3)]
        assert [r.admitted for r in results] == [True, True, False]
        await c.adjust_window("w", 0, -1, 0, W)  # best effort: never raises
        await c.release("x")
    _run(go())


def test_outage_fail_closed_raises_unavailable():
    async def go():
        c = ResilientCounters(RedisCounters(f"redis://127.0.0.1:{free_port()}/0"), "fail_closed")
        with pytest.raises(CountersUnavailable):
            await c.take_window("w", 0, W, 2, 1)
        await c.release("x")  # reconciling never raises
    _run(go())


def test_redis_dies_mid_run(tmp_path):
    async def go(url, proc):
        c = ResilientCounters(RedisCounters(url), "fail_open")
        assert (await c.take_window("w-die", 0, W, 5, 1)).admitted
        proc.terminate()
        proc.wait(timeout=10)
        r = await c.take_window("w-die", 0, W, 5, 1)
        assert r.admitted and r.used == 1  # the in-process counter took over
    with redis_server(str(tmp_path)) as (url, proc):
        _run(go(url, proc))


def test_make_counters_rejects_unknown_urls():
    assert isinstance(make_counters("memory://", "fail_open"), MemoryCounters)
    with pytest.raises(ValueError):
        make_counters("etcd://x", "fail_open")
