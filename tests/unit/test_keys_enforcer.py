"""Per-key enforcement on a real SQLite store, with in-process and Redis counters.
Time is a fake clock; nothing here asserts on elapsed time."""

from __future__ import annotations

import asyncio
import random

import pytest

from app.config import load_config
from app.http.errors import OpenAIError
from app.keys.counters import MemoryCounters, RedisCounters, ResilientCounters
from app.keys.enforcer import KeyEnforcer
from app.keys.models import KeyCreate
from app.keys.store import KeyStore
from tests.servers import REDIS, redis_server
from tooling.local_cluster import free_port


class Clock:
    def __init__(self, t: float = 1_750_000_000.0) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


@pytest.fixture(scope="module")
def redis_url(tmp_path_factory):
    if REDIS is None:
        pytest.skip("redis-server not installed")
    with redis_server(str(tmp_path_factory.mktemp("redis"))) as (url, _):
        yield url


def with_keys(config, **keys):
    return config.model_copy(update={"server": config.server.model_copy(
        update={"keys": config.server.keys.model_copy(update=keys)})})


@pytest.fixture
def config():
    return with_keys(load_config("local-cpu"), auth="keys")


@pytest.fixture
def store(tmp_path):
    s = KeyStore(f"sqlite:///{tmp_path / 'keys.db'}")
    yield s
    s.close()


def _run(coro):
    return asyncio.run(coro)


def bearer(key: str) -> str:
    return f"Bearer {key}"


def test_open_until_a_key_exists_then_keys_required(config, store):
    async def go():
        enf = KeyEnforcer(with_keys(config, auth="auto", cache_ttl_s=0.05), store, MemoryCounters())
        assert (await enf.authenticate(None)).kind == "open"
        created = await asyncio.to_thread(store.create, KeyCreate(team="t", name="n"))
        await asyncio.sleep(0.1)  # past the cache TTL
        with pytest.raises(OpenAIError) as err:
            await enf.authenticate(None)
        assert err.value.status == 401 and err.value.code == "invalid_api_key"
        assert (await enf.authenticate(bearer(created.key))).key.team == "t"
        store.revoke(created.info.id)
        await asyncio.sleep(0.1)
        with pytest.raises(OpenAIError):  # revoked: refused, and the API does not reopen
            await enf.authenticate(None)
    _run(go())


def test_revoked_and_rotated_keys_refused_after_the_cache_ttl(config, store):
    async def go():
        cfg = with_keys(config, cache_ttl_s=0.2)
        a = store.create(KeyCreate(team="t", name="a"))
        b = store.create(KeyCreate(team="t", name="b"))
        replicas = [KeyEnforcer(cfg, store, MemoryCounters()) for _ in range(2)]
        for enf in replicas:
            await enf.authenticate(bearer(a.key))
            await enf.authenticate(bearer(b.key))
        store.revoke(a.info.id)
        new_b = store.rotate(b.info.id)
        await asyncio.sleep(0.3)
        for enf in replicas:
            for old in (a.key, b.key):
                with pytest.raises(OpenAIError) as err:
                    await enf.authenticate(bearer(old))
                assert err.value.status == 401
            assert (await enf.authenticate(bearer(new_b.key))).key.id == b.info.id
    _run(go())


def test_expired_key(config, store):
    clock = Clock()
    created = store.create(KeyCreate(team="t", name="n", expires_at=clock.t + 10))
    enf = KeyEnforcer(config, store, MemoryCounters(), clock=clock)
    _run(enf.authenticate(bearer(created.key)))
    clock.t += 11
    with pytest.raises(OpenAIError) as err:
        _run(enf.authenticate(bearer(created.key)))
    assert err.value.status == 401


def test_tier_permission_and_pinning(config, store):
    enf = KeyEnforcer(config, store, MemoryCounters())
    only_fast = _run(enf.authenticate(bearer(store.create(
        KeyCreate(team="t", name="f", tiers=["fast"])).key)))
    no_pin = _run(enf.authenticate(bearer(store.create(
        KeyCreate(team="t", name="p", allow_pin=False)).key)))
    enf.check_pin(only_fast, "fast", "model")
    enf.check_pin(only_fast, None, "model")
    with pytest.raises(OpenAIError) as err:
        enf.check_pin(only_fast, "reasoning", "model")
    assert (err.value.status, err.value.code, err.value.type) == (403, "tier_not_allowed",
                                                                  "permission_error")
    with pytest.raises(OpenAIError) as err:
        enf.check_pin(no_pin, "fast", "header")
    assert (err.value.status, err.value.code) == (403, "tier_pin_not_allowed")
    assert not no_pin.may_pin and only_fast.may_pin


def test_rpm_with_headers_and_retry_after(config, store):
    clock = Clock()
    enf = KeyEnforcer(config, store, MemoryCounters(), clock=clock)
    p = _run(enf.authenticate(bearer(store.create(KeyCreate(team="t", name="n", rpm=3, tpm=1000)).key)))
    for i in range(3):
        h = _run(enf.admit_request(p))
        assert h["x-ratelimit-remaining-requests"] == str(2 - i)
        assert h["x-ratelimit-limit-tokens"] == "1000"
        clock.t += 5
    with pytest.raises(OpenAIError) as err:
        _run(enf.admit_request(p))
    e = err.value
    assert (e.status, e.code, e.type) == (429, "rate_limit_exceeded", "rate_limit_error")
    assert e.headers["retry-after"] == "45"  # the first request leaves the window at t=60 s
    assert e.headers["x-ratelimit-remaining-requests"] == "0"
    clock.t += 45
    _run(enf.admit_request(p))  # never locked longer than the window


@pytest.mark.parametrize("backend", ["memory", "redis"])
def test_tpm_admits_95_to_100_percent_of_the_limit(backend, config, store, request):
    """Requests with varied prompts and max_tokens, each reconciled to fewer tokens than it
    reserved, until refused: what the window holds is 95-100 % of the limit."""
    clock = Clock()
    counters = (MemoryCounters() if backend == "memory"
                else RedisCounters(request.getfixturevalue("redis_url"), timeout_s=5))
    enf = KeyEnforcer(config, store, counters, clock=clock)
    limit = 2000
    p = _run(enf.authenticate(bearer(store.create(KeyCreate(team="t", name=backend, tpm=limit)).key)))
    rng = random.Random(3)

    async def go():
        admitted_tokens, refused = 0, 0
        while refused < 5:
            prompt, max_tokens = rng.randint(10, 40), rng.choice([8, 16, 32])
            try:
                t = await enf.reserve(p, "fast", prompt, max_tokens)
            except OpenAIError as exc:
                assert exc.status == 429 and int(exc.headers["retry-after"]) <= 60
                refused += 1
                continue
            completion = rng.randint(1, max_tokens)
            await enf.finish(t, prompt, completion, 200, "chat")
            admitted_tokens += prompt + completion
            clock.t += 0.2
        share = admitted_tokens / limit
        assert 0.95 <= share <= 1.0, share
        clock.t += 60  # one window later the key is free again
        await enf.reserve(p, "fast", 10, 8)
    _run(go())


@pytest.mark.parametrize("unit", ["tokens", "usd"])
def test_budget_never_exceeded_by_more_than_one_request(unit, config, store, redis_url):
    """40 concurrent requests race for a small budget, over two replicas sharing Redis."""
    clock = Clock()
    spec = (dict(budget_tokens=500) if unit == "tokens" else dict(budget_usd=0.05))
    created = store.create(KeyCreate(team="t", name=unit, budget_period="day", **spec))
    reps = [KeyEnforcer(config, store, RedisCounters(redis_url, timeout_s=5), clock=clock) for _ in range(2)]
    # Already spent this period, before this replica started: read from the database.
    store.record_usage([reps[0].usage_event(created.info, "fast", "chat", 200, 100, 100, clock.t)])

    async def one(i):
        enf = reps[i % 2]
        p = await enf.authenticate(bearer(created.key))
        try:
            t = await enf.reserve(p, "fast", 20, 16)
        except OpenAIError as exc:
            assert (exc.status, exc.code, exc.type) == (429, "insufficient_quota", "insufficient_quota")
            return 0
        await asyncio.sleep(0)  # others interleave while this one "generates"
        await enf.finish(t, 20, 16, 200, "chat")
        return 36
    used = sum(_run(_gather(one, 40)))
    total = 200 + used
    price = config.tier("fast").cost_per_1k_tokens / 1000
    if unit == "tokens":
        assert 500 <= total <= 500 + 36
    else:
        assert 0.05 <= total * price <= 0.05 + 36 * price + 1e-9


async def _gather(fn, n):
    return await asyncio.gather(*[fn(i) for i in range(n)])


def test_concurrency_limit_and_release(config, store):
    enf = KeyEnforcer(config, store, MemoryCounters())
    p = _run(enf.authenticate(bearer(store.create(KeyCreate(team="t", name="c", max_concurrent=2)).key)))

    async def go():
        t1 = await enf.reserve(p, "fast", 1, 1)
        t2 = await enf.reserve(p, "fast", 1, 1)
        with pytest.raises(OpenAIError) as err:
            await enf.reserve(p, "fast", 1, 1)
        assert err.value.status == 429 and err.value.headers["retry-after"] == "1"
        await enf.finish(t1, 1, 1, 200, "chat")
        await enf.reserve(p, "fast", 1, 1)
        await enf.release(t2)
    _run(go())


def test_usage_events_cost_and_savings(config, store):
    events = []
    enf = KeyEnforcer(config, store, MemoryCounters(), on_usage=events.append)
    p = _run(enf.authenticate(bearer(store.create(KeyCreate(team="search", name="u")).key)))

    async def go():
        t = await enf.reserve(p, "fast", 10, 10)
        await enf.finish(t, 600, 400, 200, "chat")
        t = await enf.reserve(p, "fast", 10, 10)
        await enf.finish(t, 0, 0, 500, "chat", tier="fast")  # failed: no usage event
    _run(go())
    assert len(events) == 1
    e = events[0]
    assert (e.team, e.tier, e.prompt_tokens, e.completion_tokens) == ("search", "fast", 600, 400)
    assert e.cost_usd == pytest.approx(config.tier("fast").cost_per_1k_tokens)
    assert e.strongest_cost_usd == pytest.approx(config.tier("reasoning").cost_per_1k_tokens)


def test_redis_outage_policies_never_raise_a_500(config, store):
    dead = f"redis://127.0.0.1:{free_port()}/0"
    created = store.create(KeyCreate(team="t", name="o", rpm=1))
    open_enf = KeyEnforcer(config, store, ResilientCounters(RedisCounters(dead), "fail_open"))
    closed_enf = KeyEnforcer(config, store, ResilientCounters(RedisCounters(dead), "fail_closed"))
    p = _run(open_enf.authenticate(bearer(created.key)))
    _run(open_enf.admit_request(p))
    with pytest.raises(OpenAIError) as err:  # the in-process limit still holds
        _run(open_enf.admit_request(p))
    assert err.value.status == 429
    with pytest.raises(OpenAIError) as err:
        _run(closed_enf.admit_request(p))
    assert err.value.status == 503 and err.value.headers["retry-after"] == "2"


def test_database_outage_is_a_503_not_a_500(config, tmp_path):
    store = KeyStore(f"sqlite:///{tmp_path / 'gone.db'}")
    created = store.create(KeyCreate(team="t", name="n"))
    enf = KeyEnforcer(config, store, MemoryCounters())
    store.engine.dispose()
    (tmp_path / "gone.db").unlink()
    (tmp_path / "gone.db").mkdir()  # the database file is gone: every query fails
    with pytest.raises(OpenAIError) as err:
        _run(enf.authenticate(bearer(created.key)))
    assert err.value.status == 503 and err.value.code == "keys_unavailable"
    assert err.value.headers["retry-after"] == "2"
