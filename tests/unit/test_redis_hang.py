"""A Redis that hangs (SIGSTOP: the kernel still accepts connections, nothing answers),
against a real redis-server: shared-state calls give up fast, degrade, and recover."""

from __future__ import annotations

import asyncio
import os
import signal
import time
from collections.abc import Iterator
from contextlib import contextmanager

import pytest

from app.keys.counters import CountersUnavailable, RedisCounters, ResilientCounters
from app.routing.redis_affinity import RedisAffinityStore
from tests.servers import REDIS, redis_server

pytestmark = pytest.mark.skipif(REDIS is None, reason="redis-server not installed")
W = 60_000


@contextmanager
def _stopped(proc) -> Iterator[None]:
    os.kill(proc.pid, signal.SIGSTOP)
    try:
        yield
    finally:
        os.kill(proc.pid, signal.SIGCONT)


async def _timed(coro) -> tuple[object, float]:
    start = time.perf_counter()
    result = await coro
    return result, time.perf_counter() - start


def test_limit_counters_pay_one_timeout_then_skip_a_hung_redis(tmp_path) -> None:
    async def go(url: str, proc) -> None:
        counters = ResilientCounters(RedisCounters(url, timeout_s=5), "fail_open",
                                     timeout_s=0.25, retry_s=1.0)
        assert (await counters.take_window("w-hang", 0, W, 100, 1)).admitted  # Redis is up
        with _stopped(proc):
            first, first_s = await _timed(counters.take_window("w-hang", 0, W, 100, 1))
            assert first.admitted and 0.2 <= first_s < 1.0  # one timeout, then the fallback
            rest = [await _timed(counters.take_window("w-hang", 0, W, 100, 1)) for _ in range(20)]
            assert all(r.admitted for r, _ in rest)
            assert max(s for _, s in rest) < 0.05  # no request waits on a Redis known to hang
            await counters.release("c-hang")  # reconciling skips it too
            await asyncio.sleep(1.1)  # past retry_s: one probe, which times out again
            _, probe_s = await _timed(counters.acquire("c-hang", 10, 60))
            assert 0.2 <= probe_s < 1.0
        await asyncio.sleep(1.1)
        # Redis is back: the next probe reaches it, and it stays in use.
        await counters.take_window("w-back", 0, W, 100, 1)
        second = await counters.take_window("w-back", 0, W, 100, 1)
        assert second.used == 2
        assert await counters.primary._client.exists(RedisCounters.PREFIX + "w-back")
        await counters.primary.close()

    with redis_server(str(tmp_path)) as (url, proc):
        asyncio.run(go(url, proc))


def test_fail_closed_answers_at_once_while_redis_hangs(tmp_path) -> None:
    async def go(url: str, proc) -> None:
        counters = ResilientCounters(RedisCounters(url, timeout_s=5), "fail_closed",
                                     timeout_s=0.25, retry_s=5.0)
        await counters.take_window("w", 0, W, 100, 1)
        with _stopped(proc):
            for attempt in range(5):
                start = time.perf_counter()
                with pytest.raises(CountersUnavailable):
                    await counters.take_window("w", 0, W, 100, 1)
                assert time.perf_counter() - start < (1.0 if attempt == 0 else 0.05)
        await counters.primary.close()

    with redis_server(str(tmp_path)) as (url, proc):
        asyncio.run(go(url, proc))


def test_session_affinity_pays_one_timeout_then_skips_a_hung_redis(tmp_path) -> None:
    async def go(url: str, proc) -> None:
        store = RedisAffinityStore(url, 60, timeout_s=0.05, retry_s=0.5)
        await store.put("s-hang", "reasoning")
        assert await store.get("s-hang") == "reasoning"
        with _stopped(proc):
            got, first_s = await _timed(store.get("s-hang"))
            assert got is None and 0.04 <= first_s < 0.5  # routed without affinity
            rest = [await _timed(store.get("s-hang")) for _ in range(20)]
            _, put_s = await _timed(store.put("s-hang", "fast"))
            assert all(r is None for r, _ in rest)
            assert max(s for _, s in rest) < 0.01 and put_s < 0.01  # Redis is left alone
        await asyncio.sleep(0.6)  # past retry_s: the next call probes, and Redis answers
        assert await store.get("s-hang") == "reasoning"
        await store.put("s-hang", "fast")
        assert await store.get("s-hang") == "fast"
        await store.close()

    with redis_server(str(tmp_path)) as (url, proc):
        asyncio.run(go(url, proc))
