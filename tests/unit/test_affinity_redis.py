"""RedisAffinityStore against a real redis-server that this module starts and stops."""

from __future__ import annotations

import asyncio

import pytest

from app.routing.affinity import make_store
from app.routing.assemble import build_pipeline
from app.routing.redis_affinity import KEY_PREFIX, RedisAffinityStore
from tests.route_helpers import FixedScorer, request, two_tier_config
from tests.servers import REDIS, redis_server
from tooling.local_cluster import free_port

pytestmark = pytest.mark.skipif(REDIS is None, reason="redis-server not installed "
                                "(Debian: apt-get install -y redis-server)")



@pytest.fixture(scope="module")
def redis_url(tmp_path_factory: pytest.TempPathFactory):
    with redis_server(str(tmp_path_factory.mktemp("redis"))) as (url, _):
        yield url


def _run(coro):
    return asyncio.run(coro)


def test_put_get_and_shared_between_replicas(redis_url: str) -> None:
    async def go():
        a, b = RedisAffinityStore(redis_url, 60), RedisAffinityStore(redis_url, 60)
        try:
            assert await a.get("s-shared") is None
            await a.put("s-shared", "reasoning")
            assert await b.get("s-shared") == "reasoning"  # another replica sees it
            await b.put("s-shared", "fast")
            assert await a.get("s-shared") == "fast"
            ttl = await a._client.pttl(KEY_PREFIX + "s-shared")
            assert 0 < ttl <= 60_000
        finally:
            await a.close()
            await b.close()
    _run(go())


def test_entries_expire_after_ttl(redis_url: str) -> None:
    async def go():
        store = RedisAffinityStore(redis_url, 0.15)
        try:
            await store.put("s-ttl", "reasoning")
            assert await store.get("s-ttl") == "reasoning"
            await asyncio.sleep(0.3)
            assert await store.get("s-ttl") is None
        finally:
            await store.close()
    _run(go())


def test_make_store_picks_redis(redis_url: str) -> None:
    assert isinstance(make_store(redis_url, 10, 100), RedisAffinityStore)


def test_outage_degrades_to_no_affinity() -> None:
    async def go():
        store = RedisAffinityStore(f"redis://127.0.0.1:{free_port()}/0", 10)  # nothing listens
        try:
            await store.put("s-down", "reasoning")  # must not raise
            assert await store.get("s-down") is None
        finally:
            await store.close()
    _run(go())


def test_router_sticks_across_replicas_via_redis(redis_url: str) -> None:
    async def go():
        cfg, scorer = two_tier_config(), FixedScorer(0.9)
        s1, s2 = RedisAffinityStore(redis_url, 60), RedisAffinityStore(redis_url, 60)
        try:
            first = build_pipeline(cfg, scorer=scorer, store=s1)
            req = request(session_id="conv-redis")
            assert (await first.decide(req)).tier == "reasoning"
            scorer.value = 0.1  # an easy follow-up, decided by another replica
            second = build_pipeline(cfg, scorer=scorer, store=s2)
            d = await second.decide(req.model_copy(update={"request_id": "2"}))
            assert (d.tier, d.reason, d.affinity_hit) == ("reasoning", "affinity", True)
        finally:
            await s1.close()
            await s2.close()
    _run(go())
