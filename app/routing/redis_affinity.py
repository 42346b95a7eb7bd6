"""Affinity shared by several router replicas, in Redis (keys expire with the TTL)."""

from __future__ import annotations

import redis.asyncio as redis

KEY_PREFIX = "tierserve:affinity:"


class RedisAffinityStore:
    def __init__(self, url: str, ttl_s: float) -> None:
        self._client = redis.Redis.from_url(url, decode_responses=True,
                                            socket_timeout=0.5, socket_connect_timeout=0.5)
        self._ttl_ms = int(ttl_s * 1000)

    async def get(self, session_id: str) -> str | None:
        return await self._client.get(KEY_PREFIX + session_id)

    async def put(self, session_id: str, tier: str) -> None:
        await self._client.set(KEY_PREFIX + session_id, tier, px=self._ttl_ms)

    async def close(self) -> None:
        await self._client.aclose()
