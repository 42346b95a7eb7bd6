"""Session affinity: a conversation keeps the tier it was given, for a TTL."""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Protocol


class AffinityStore(Protocol):
    async def get(self, session_id: str) -> str | None: ...
    async def put(self, session_id: str, tier: str) -> None: ...


class MemoryAffinityStore:
    """In-process LRU with expiry; one per router replica."""

    def __init__(self, ttl_s: float, max_sessions: int,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._ttl = ttl_s
        self._max = max_sessions
        self._clock = clock
        self._data: OrderedDict[str, tuple[str, float]] = OrderedDict()

    async def get(self, session_id: str) -> str | None:
        hit = self._data.get(session_id)
        if hit is None:
            return None
        tier, expires = hit
        if expires <= self._clock():
            del self._data[session_id]
            return None
        self._data.move_to_end(session_id)
        return tier

    async def put(self, session_id: str, tier: str) -> None:
        self._data[session_id] = (tier, self._clock() + self._ttl)
        self._data.move_to_end(session_id)
        while len(self._data) > self._max:
            self._data.popitem(last=False)


def make_store(url: str, ttl_s: float, max_sessions: int) -> AffinityStore:
    """`memory://` or `redis://host:port/db`."""
    if url.startswith("memory://"):
        return MemoryAffinityStore(ttl_s, max_sessions)
    if url.startswith(("redis://", "rediss://", "unix://")):
        from app.routing.redis_affinity import RedisAffinityStore

        return RedisAffinityStore(url, ttl_s)
    raise ValueError(f"unsupported affinity store URL {url!r}: use memory:// or redis://")
