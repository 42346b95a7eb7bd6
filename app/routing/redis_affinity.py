"""Affinity shared by several router replicas, in Redis (keys expire with the TTL).

Affinity is an optimisation, so a Redis outage must not fail requests: errors
are logged and read as "no affinity". A hung Redis costs one call `timeout_s`; then it is
skipped for `retry_s` (app/breaker.py), so the router stays inside its decision budget.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable
from typing import TypeVar, cast

import redis.asyncio as redis

from app.breaker import Breaker

T = TypeVar("T")

KEY_PREFIX = "tierserve:affinity:"
log = logging.getLogger(__name__)


class RedisAffinityStore:
    def __init__(self, url: str, ttl_s: float, timeout_s: float = 0.05, retry_s: float = 5.0) -> None:
        self._client = redis.Redis.from_url(url, decode_responses=True,
                                            socket_timeout=0.5, socket_connect_timeout=0.5)
        # Redis rejects PX 0; a sub-millisecond TTL still means "expire at once".
        self._ttl_ms = max(1, int(ttl_s * 1000))
        self._timeout_s = timeout_s
        self._breaker = Breaker(retry_s)

    async def _call(self, op: Awaitable[T], what: str) -> T | None:
        if not self._breaker.may_try():
            if asyncio.iscoroutine(op):
                op.close()  # never awaited: Redis is being left alone
            return None
        try:
            result = await asyncio.wait_for(op, self._timeout_s)
        except Exception as exc:  # RedisError, OSError, TimeoutError: all read as "no affinity"
            self._breaker.record(ok=False)
            log.warning("affinity store unavailable (%s), %s for %.0f s", type(exc).__name__, what,
                        self._breaker.retry_s)
            return None
        finally:
            self._breaker.probe_done()
        self._breaker.record(ok=True)
        return result

    async def get(self, session_id: str) -> str | None:
        # decode_responses=True: redis-py types every reply as bytes | str, this one is str.
        read = cast("Awaitable[str | None]", self._client.get(KEY_PREFIX + session_id))
        return await self._call(read, "routing without affinity")

    async def put(self, session_id: str, tier: str) -> None:
        await self._call(self._client.set(KEY_PREFIX + session_id, tier, px=self._ttl_ms),
                         "session tiers not saved")

    async def close(self) -> None:
        await self._client.aclose()
