"""Counters behind per-key limits: in-process (one replica) or Redis (shared, atomic Lua).

Both implement the same four operations with the same arithmetic (windows.py), so a
limit means the same with one ingress replica or many.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from typing import Protocol

from app.breaker import Breaker
from app.keys.windows import WindowResult, bucket_ms, evaluate

log = logging.getLogger("ray.serve.tierserve.keys")
NEEDS_SEED = -1


class CountersUnavailable(Exception):
    """The shared counters cannot be reached and the policy is fail_closed."""


class Counters(Protocol):
    async def take_window(self, name: str, now_ms: int, window_ms: int, limit: int,
                          cost: int) -> WindowResult: ...

    async def adjust_window(self, name: str, bucket: int, delta: int, now_ms: int,
                            window_ms: int) -> None: ...

    async def acquire(self, name: str, limit: int, ttl_s: int) -> tuple[bool, int]: ...

    async def release(self, name: str) -> None: ...

    async def take_budget(self, name: str, limit: int, cost: int, seed: int | None,
                          ttl_s: int) -> tuple[bool, int]:
        """Admitted iff spent < limit before this take; adds `cost`. (False, NEEDS_SEED) when
        the period's counter does not exist and no seed was given."""
        ...

    async def adjust_budget(self, name: str, delta: int) -> None: ...


class MemoryCounters:
    """One replica's counters; with several ingress replicas each enforces its own share."""

    def __init__(self) -> None:
        self._windows: dict[str, dict[int, int]] = {}
        self._gauges: dict[str, int] = {}
        self._budgets: dict[str, int] = {}

    async def take_window(self, name, now_ms, window_ms, limit, cost) -> WindowResult:
        result, live = evaluate(self._windows.get(name, {}), now_ms, window_ms, limit, cost)
        self._windows[name] = live
        return result

    async def adjust_window(self, name, bucket, delta, now_ms, window_ms) -> None:
        live = self._windows.get(name)
        span = window_ms // bucket_ms(window_ms)
        if live is not None and bucket > now_ms // bucket_ms(window_ms) - span and bucket in live:
            live[bucket] = max(0, live[bucket] + delta)

    async def acquire(self, name, limit, ttl_s) -> tuple[bool, int]:
        cur = self._gauges.get(name, 0)
        if cur >= limit:
            return False, cur
        self._gauges[name] = cur + 1
        return True, cur + 1

    async def release(self, name) -> None:
        self._gauges[name] = max(0, self._gauges.get(name, 0) - 1)

    async def take_budget(self, name, limit, cost, seed, ttl_s) -> tuple[bool, int]:
        if name not in self._budgets:
            if seed is None:
                return False, NEEDS_SEED
            self._budgets[name] = seed
        spent = self._budgets[name]
        if spent >= limit:
            return False, spent
        self._budgets[name] = spent + cost
        return True, spent + cost

    async def adjust_budget(self, name, delta) -> None:
        if name in self._budgets:
            self._budgets[name] += delta


# KEYS[1]: hash bucket -> amount. ARGV: now_ms, window_ms, bucket_ms, limit, cost.
# Same arithmetic as windows.evaluate. Returns {admitted, used, retry_ms, reset_ms, bucket}.
_TAKE_WINDOW = """
local now, win, b = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local limit, cost = tonumber(ARGV[4]), tonumber(ARGV[5])
local cur = math.floor(now / b)
local span = math.floor(win / b)
local flat = redis.call('HGETALL', KEYS[1])
local live, used = {}, 0
for i = 1, #flat, 2 do
  local k, v = tonumber(flat[i]), tonumber(flat[i + 1])
  if k > cur - span then live[#live + 1] = {k, v}; used = used + v
  else redis.call('HDEL', KEYS[1], flat[i]) end
end
local admitted = 0
if used + cost <= limit then
  admitted = 1
  used = used + cost
  local found = false
  for _, e in ipairs(live) do if e[1] == cur then e[2] = e[2] + cost; found = true end end
  if not found then live[#live + 1] = {cur, cost} end
  redis.call('HINCRBY', KEYS[1], cur, cost)
  redis.call('PEXPIRE', KEYS[1], win + b)
end
table.sort(live, function(x, y) return x[1] < y[1] end)
local function expiry(need)
  local freed = 0
  for _, e in ipairs(live) do
    freed = freed + e[2]
    if freed >= need then return math.max(1, (e[1] + span) * b - now) end
  end
  return win
end
local retry, reset = 0, 0
if admitted == 0 then retry = expiry(used + cost - limit) end
if used > 0 then reset = expiry(used) end
return {admitted, used, retry, reset, cur}
"""

# KEYS[1]: hash. ARGV: bucket, delta, min_live_bucket. Only a bucket still in the window.
_ADJUST_WINDOW = """
local bucket, delta, oldest = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3])
if tonumber(bucket) < oldest then return 0 end
local v = redis.call('HGET', KEYS[1], bucket)
if not v then return 0 end
local n = tonumber(v) + delta
if n < 0 then n = 0 end
redis.call('HSET', KEYS[1], bucket, n)
return 1
"""

_ACQUIRE = """
local cur = tonumber(redis.call('GET', KEYS[1]) or '0')
if cur >= tonumber(ARGV[1]) then return {0, cur} end
cur = redis.call('INCR', KEYS[1])
redis.call('EXPIRE', KEYS[1], ARGV[2])
return {1, cur}
"""

_RELEASE = """
local cur = tonumber(redis.call('GET', KEYS[1]) or '0')
if cur > 0 then redis.call('DECR', KEYS[1]) end
return 0
"""

# ARGV: limit, cost, seed ('' = none), ttl_s.
_TAKE_BUDGET = """
if redis.call('EXISTS', KEYS[1]) == 0 then
  if ARGV[3] == '' then return {0, -1} end
  redis.call('SET', KEYS[1], ARGV[3], 'EX', ARGV[4], 'NX')
end
local spent = tonumber(redis.call('GET', KEYS[1]))
if spent >= tonumber(ARGV[1]) then return {0, spent} end
return {1, redis.call('INCRBY', KEYS[1], ARGV[2])}
"""


class RedisCounters:
    """Counters in Redis, shared by every ingress replica; each operation is one Lua call."""

    PREFIX = "tierserve:limits:"

    def __init__(self, url: str, timeout_s: float = 0.5) -> None:
        import redis.asyncio as redis

        self._client = redis.Redis.from_url(url, socket_timeout=timeout_s,
                                            socket_connect_timeout=timeout_s)
        self._take_window = self._client.register_script(_TAKE_WINDOW)
        self._adjust_window = self._client.register_script(_ADJUST_WINDOW)
        self._acquire = self._client.register_script(_ACQUIRE)
        self._release = self._client.register_script(_RELEASE)
        self._take_budget = self._client.register_script(_TAKE_BUDGET)

    async def take_window(self, name, now_ms, window_ms, limit, cost) -> WindowResult:
        b = bucket_ms(window_ms)
        a, used, retry, reset, cur = await self._take_window(
            keys=[self.PREFIX + name], args=[now_ms, window_ms, b, limit, cost])
        return WindowResult(bool(a), int(used), limit, int(retry), int(reset), int(cur))

    async def adjust_window(self, name, bucket, delta, now_ms, window_ms) -> None:
        b = bucket_ms(window_ms)
        oldest = now_ms // b - window_ms // b + 1
        await self._adjust_window(keys=[self.PREFIX + name], args=[bucket, delta, oldest])

    async def acquire(self, name, limit, ttl_s) -> tuple[bool, int]:
        a, cur = await self._acquire(keys=[self.PREFIX + name], args=[limit, ttl_s])
        return bool(a), int(cur)

    async def release(self, name) -> None:
        await self._release(keys=[self.PREFIX + name])

    async def take_budget(self, name, limit, cost, seed, ttl_s) -> tuple[bool, int]:
        a, spent = await self._take_budget(keys=[self.PREFIX + name],
                                           args=[limit, cost, "" if seed is None else seed, ttl_s])
        return bool(a), int(spent)

    async def adjust_budget(self, name, delta) -> None:
        # INCRBY only if the period's counter exists (XX semantics via a tiny script is overkill:
        # a missing counter is re-seeded from the database on the next take).
        if await self._client.exists(self.PREFIX + name):
            await self._client.incrby(self.PREFIX + name, delta)

    async def close(self) -> None:
        await self._client.aclose()


class ResilientCounters:
    """Redis with the configured outage policy.

    fail_open: an operation Redis cannot answer is done on this replica's in-process
    counters (limits then hold per replica, as with memory://); fail_closed: the request
    gets 503 with Retry-After. Either way never a 500.

    A Redis that hangs (accepts connections, never answers) costs one request `timeout_s`:
    after a failure Redis is left alone for `retry_s`, then one request at a time probes it
    while the others keep to the policy, so no request waits on a Redis known to be down.
    """

    def __init__(self, primary: Counters, policy: str, timeout_s: float = 0.25,
                 retry_s: float = 5.0) -> None:
        self.primary = primary
        self.fallback = MemoryCounters()
        self.policy = policy
        self.timeout_s = timeout_s
        self.retry_s = retry_s
        self._breaker = Breaker(retry_s)
        self._warned = 0.0

    async def _primary(self, op: str, *args):
        try:
            result = await asyncio.wait_for(getattr(self.primary, op)(*args), timeout=self.timeout_s)
        except Exception:  # not a cancellation: the client left, Redis did nothing wrong
            self._breaker.record(ok=False)
            raise
        finally:
            self._breaker.probe_done()
        self._breaker.record(ok=True)
        return result

    async def _call(self, op: str, *args):
        error: Exception | None = None
        if self._breaker.may_try():
            try:
                return await self._primary(op, *args)
            except Exception as exc:  # redis.ConnectionError, TimeoutError, OSError...
                error = exc
                now = time.monotonic()
                if now - self._warned > 30:
                    self._warned = now
                    log.warning("shared limit counters unavailable (%s); policy %s",
                                type(exc).__name__, self.policy)
        if self.policy == "fail_closed":
            raise CountersUnavailable(str(error or "Redis is down (retrying shortly)")) from None
        return await getattr(self.fallback, op)(*args)

    async def take_window(self, *args) -> WindowResult:
        return await self._call("take_window", *args)

    async def adjust_window(self, *args) -> None:
        await self._best_effort("adjust_window", *args)

    async def acquire(self, *args) -> tuple[bool, int]:
        return await self._call("acquire", *args)

    async def release(self, *args) -> None:
        await self._best_effort("release", *args)

    async def take_budget(self, *args) -> tuple[bool, int]:
        return await self._call("take_budget", *args)

    async def adjust_budget(self, *args) -> None:
        await self._best_effort("adjust_budget", *args)

    async def _best_effort(self, op: str, *args) -> None:
        # Reconciling after the response: an outage here loses a correction, never a request.
        if self._breaker.may_try():
            with contextlib.suppress(Exception):
                await self._primary(op, *args)
        with contextlib.suppress(Exception):
            await getattr(self.fallback, op)(*args)


def make_counters(url: str, outage_policy: str) -> Counters:
    if url.startswith(("redis://", "rediss://", "unix://")):
        return ResilientCounters(RedisCounters(url), outage_policy)
    if url != "memory://":
        raise ValueError(f"unsupported counters URL {url!r}: use memory:// or redis://")
    return MemoryCounters()
