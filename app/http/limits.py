"""Admission control at the ingress: API keys, per-key rate limits, in-flight cap."""

from __future__ import annotations

import hmac
import math
import os
import time
from collections import OrderedDict
from collections.abc import Callable

from app.config.schema import ServerConfig
from app.http.errors import OpenAIError


def load_api_keys(env_name: str) -> frozenset[str]:
    raw = os.environ.get(env_name, "")
    return frozenset(k.strip() for k in raw.split(",") if k.strip())


class TokenBucket:
    def __init__(self, rate: float, burst: int, now: float) -> None:
        self.rate, self.burst = rate, burst
        self.tokens, self.stamp = float(burst), now

    def take(self, now: float) -> float:
        """0 if admitted, else seconds until a token is available."""
        self.tokens = min(self.burst, self.tokens + (now - self.stamp) * self.rate)
        self.stamp = now
        if self.tokens >= 1:
            self.tokens -= 1
            return 0.0
        return (1 - self.tokens) / self.rate


class Admission:
    """Decides whether a request may proceed; raises OpenAIError (401/429/503) if not."""

    MAX_BUCKETS = 10_000

    def __init__(self, server: ServerConfig, api_keys: frozenset[str],
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._server = server
        self._keys = api_keys
        self._clock = clock
        self._buckets: OrderedDict[str, TokenBucket] = OrderedDict()
        self.in_flight = 0

    def authenticate(self, authorization: str | None) -> str:
        """The caller's identity for rate limiting: its key, or 'anonymous' when auth is off."""
        if not self._keys:
            return "anonymous"
        scheme, _, token = (authorization or "").partition(" ")
        # Bytes: compare_digest refuses non-ASCII str, and a header may carry any latin-1.
        presented = token.encode()
        if scheme.lower() != "bearer" or not any(hmac.compare_digest(presented, k.encode())
                                                 for k in self._keys):
            raise OpenAIError(401, "Missing or invalid API key. Send 'Authorization: Bearer <key>'.",
                              code="invalid_api_key")
        return token

    def rate_limit(self, identity: str) -> None:
        now = self._clock()
        bucket = self._buckets.get(identity)
        if bucket is None:
            rl = self._server.rate_limit
            bucket = self._buckets[identity] = TokenBucket(rl.requests_per_s, rl.burst, now)
            if len(self._buckets) > self.MAX_BUCKETS:
                self._buckets.popitem(last=False)
        self._buckets.move_to_end(identity)
        wait = bucket.take(now)
        if wait > 0:
            raise OpenAIError(429, "Rate limit exceeded for this API key; retry later.",
                              code="rate_limit_exceeded", retry_after_s=max(1, math.ceil(wait)))

    def enter(self) -> None:
        if self.in_flight >= self._server.max_in_flight:
            raise OpenAIError(503, "Tierserve is at capacity; retry shortly.", code="overloaded",
                              retry_after_s=self._server.retry_after_s)
        self.in_flight += 1

    def leave(self) -> None:
        self.in_flight -= 1
