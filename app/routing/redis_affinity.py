"""Affinity shared by several router replicas, in Redis (keys expire with the TTL).

Affinity is an optimisation, so a Redis outage must not fail requests: errors
are logged and read as "no affinity".
"""

from __future__ import annotations

import logging

import redis.asyncio as redis
from redis.exceptions import RedisError

KEY_PREFIX = "tierserve:affinity:"
log = logging.getLogger(__name__)


class RedisAffinityStore:
    def __init__(self, url: str, ttl_s: float) -> None:
        self._client = redis.Redis.from_url(url, decode_responses=True,
                                            socket_timeout=0.5, socket_connect_timeout=0.5)
        # Redis rejects PX 0; a sub-millisecond TTL still means "expire at once".
        self._ttl_ms = max(1, int(ttl_s * 1000))

    async def get(self, session_id: str) -> str | None:
        try:
            return await self._client.get(KEY_PREFIX + session_id)
        except (RedisError, OSError) as exc:
            log.warning("affinity store unavailable, routing without affinity: %s", exc)
            return None

    async def put(self, session_id: str, tier: str) -> None:
        try:
            await self._client.set(KEY_PREFIX + session_id, tier, px=self._ttl_ms)
        except (RedisError, OSError) as exc:
            log.warning("affinity store unavailable, session tier not saved: %s", exc)

    async def close(self) -> None:
        await self._client.aclose()
