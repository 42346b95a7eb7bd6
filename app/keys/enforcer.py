"""Per-key enforcement at the ingress: who is calling, which tiers, how much, how often.

Order per request: authenticate (cached lookup) -> requests per minute -> tier permission
-> tokens per minute, budget and concurrency, reserved with the prompt estimate plus
max_tokens -> ... -> finish: the reservation is reconciled to vLLM's exact usage and a
usage event is queued for the database.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field

from app.config.schema import TierserveConfig
from app.http.errors import OpenAIError
from app.keys.counters import NEEDS_SEED, Counters, CountersUnavailable
from app.keys.models import KeyInfo, UsageEvent
from app.keys.secrets import hash_key
from app.keys.store import KeyStore
from app.keys.windows import WindowResult, duration, period_end, period_start, retry_after_s

log = logging.getLogger("ray.serve.tierserve.keys")
MINUTE_MS = 60_000
CONCURRENCY_TTL_S = 600  # a crashed replica's slots free themselves after this


@dataclass(frozen=True)
class Principal:
    """Who a request is from. `key` is None when auth is open or for a legacy env key."""

    key: KeyInfo | None
    kind: str  # "key", "open", "legacy"
    ident: str = "anonymous"  # for the server-wide per-caller bucket (never a plaintext key)

    @property
    def team(self) -> str:
        return self.key.team if self.key else self.kind

    def may_use(self, tier: str) -> bool:
        return self.key is None or self.key.tiers is None or tier in self.key.tiers

    @property
    def may_pin(self) -> bool:
        return self.key is None or self.key.allow_pin


@dataclass
class Ticket:
    """What a request reserved; given back or reconciled when it ends."""

    principal: Principal
    tier: str
    reserved_tokens: int = 0
    tpm_bucket: int | None = None
    budget_name: str | None = None
    budget_reserved: int = 0
    concurrency: str | None = None
    headers: dict[str, str] = field(default_factory=dict)


def _headers(kind: str, r: WindowResult) -> dict[str, str]:
    return {f"x-ratelimit-limit-{kind}": str(r.limit),
            f"x-ratelimit-remaining-{kind}": str(r.remaining),
            f"x-ratelimit-reset-{kind}": duration(r.reset_ms)}


class _TTLCache:
    def __init__(self, ttl_s: float, size: int = 10_000) -> None:
        self._ttl, self._size = ttl_s, size
        self._data: OrderedDict[str, tuple[float, KeyInfo | None]] = OrderedDict()

    def get(self, k: str, now: float) -> tuple[bool, KeyInfo | None]:
        hit = self._data.get(k)
        if hit is None or hit[0] <= now:
            return False, None
        return True, hit[1]

    def put(self, k: str, v: KeyInfo | None, now: float) -> None:
        self._data[k] = (now + self._ttl, v)
        self._data.move_to_end(k)
        while len(self._data) > self._size:
            self._data.popitem(last=False)


class KeyEnforcer:
    def __init__(self, config: TierserveConfig, store: KeyStore, counters: Counters,
                 legacy_keys: frozenset[str] = frozenset(),
                 clock: Callable[[], float] = time.time,
                 on_usage: Callable[[UsageEvent], None] | None = None) -> None:
        self.cfg = config.server.keys
        self.store = store
        self.counters = counters
        self._legacy = legacy_keys
        self._clock = clock
        self._on_usage = on_usage
        self._cache = _TTLCache(self.cfg.cache_ttl_s)
        self._price = {t.name: t.cost_per_1k_tokens for t in config.tiers}
        self._strongest = config.routing.strong_tier
        self._open = False
        self._open_checked = 0.0
        self._refresh_open(store.count())
        if self._open:
            log.warning("Tierserve's API is OPEN: no keys exist and no API keys are set "
                        "(create one with `tierserve keys create`; see README 'Teams, keys and spend')")

    # -- open or keyed ---------------------------------------------------------------
    def _refresh_open(self, count: int) -> None:
        was = self._open
        auth = self.cfg.auth
        self._open = auth == "open" or (auth == "auto" and count == 0 and not self._legacy)
        self._open_checked = time.monotonic()
        if was and not self._open:
            log.warning("keys exist: Tierserve's API now requires an API key")

    async def _is_open(self) -> bool:
        if self.cfg.auth != "auto":
            return self.cfg.auth == "open"
        if self._open and time.monotonic() - self._open_checked > self.cfg.cache_ttl_s:
            self._open_checked = time.monotonic()
            self._refresh_open(await self._db(self.store.count))
        return self._open

    async def _db(self, fn, *args):
        """A database call off the event loop; an outage is a 503, never a 500."""
        try:
            return await asyncio.to_thread(fn, *args)
        except Exception as exc:
            log.warning("keys database unavailable: %s", type(exc).__name__)
            raise OpenAIError(503, "The keys database is unavailable; retry shortly.",
                              code="keys_unavailable", retry_after_s=2) from None

    # -- authentication --------------------------------------------------------------
    async def authenticate(self, authorization: str | None) -> Principal:
        if await self._is_open():
            return Principal(None, "open")

        scheme, _, token = (authorization or "").partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token:
            raise _invalid_key()
        digest = hash_key(token)
        if any(hmac.compare_digest(token.encode(), k.encode()) for k in self._legacy):
            return Principal(None, "legacy", "legacy:" + digest[:16])
        now = time.monotonic()  # the cache is keyed by hash: no plaintext kept in memory
        hit, info = self._cache.get(digest, now)
        if not hit:
            info = await self._db(self.store.lookup, token)
            self._cache.put(digest, info, now)
        if info is None:
            raise _invalid_key()
        if info.expires_at is not None and info.expires_at <= self._clock():
            raise OpenAIError(401, "This API key has expired.", code="invalid_api_key")
        return Principal(info, "key", info.id)

    # -- requests per minute ------------------------------------------------------------
    async def admit_request(self, p: Principal) -> dict[str, str]:
        """RPM (and a look at TPM for the headers). Raises 429 with Retry-After."""
        if p.key is None:
            return {}
        now_ms = int(self._clock() * 1000)
        headers: dict[str, str] = {}
        try:
            rpm, tpm = await asyncio.gather(
                self._take(f"rpm:{p.key.id}", now_ms, p.key.rpm, 1),
                self._take(f"tpm:{p.key.id}", now_ms, p.key.tpm, 0))
        except CountersUnavailable:
            raise _counters_down() from None
        if tpm is not None:
            headers |= _headers("tokens", tpm)
        if rpm is not None:
            headers |= _headers("requests", rpm)
            if not rpm.admitted:
                raise OpenAIError(429, f"Rate limit reached for requests: {rpm.limit} per minute "
                                       "for this key.", code="rate_limit_exceeded",
                                  retry_after_s=retry_after_s(rpm.retry_ms), headers=headers)
        return headers

    async def _take(self, name: str, now_ms: int, limit: int | None, cost: int) -> WindowResult | None:
        if limit is None:
            return None
        return await self.counters.take_window(name, now_ms, MINUTE_MS, limit, cost)

    # -- tiers -------------------------------------------------------------------------
    def check_pin(self, p: Principal, tier: str | None, via: str) -> None:
        """A client naming its tier (`model` or the x-tierserve-tier header)."""
        if tier is None:
            return
        if not p.may_use(tier):
            allowed = p.key.tiers if p.key else None
            raise OpenAIError(403, f"This API key may not use the '{tier}' tier "
                                   f"(allowed: {allowed}).", code="tier_not_allowed",
                              param="model" if via == "model" else None)
        if not p.may_pin:
            raise OpenAIError(403, "This API key may not choose its tier; use model 'auto'.",
                              code="tier_pin_not_allowed", param="model" if via == "model" else None)

    # -- tokens, budget, concurrency ------------------------------------------------------
    def _units(self, key: KeyInfo, tier: str, tokens: int) -> int:
        """Budget units: tokens, or micro-USD at the tier's price."""
        if key.budget_tokens is not None:
            return tokens
        return int(-(-tokens * self._price.get(tier, 0.0) * 1000 // 1))  # ceil(tokens*price/1000*1e6)

    async def reserve(self, p: Principal, tier: str, prompt_estimate: int,
                      max_tokens: int | None) -> Ticket:
        ticket = Ticket(p, tier)
        if p.key is None:
            return ticket
        key = p.key
        cost = prompt_estimate + (max_tokens or self.cfg.default_completion_reserve)
        now = self._clock()
        try:
            if key.tpm is not None:
                r = await self.counters.take_window(f"tpm:{key.id}", int(now * 1000), MINUTE_MS,
                                                    key.tpm, cost)
                ticket.headers |= _headers("tokens", r)
                if not r.admitted:
                    if cost > key.tpm:
                        raise OpenAIError(429, f"Request too large: it may use {cost} tokens and this "
                                               f"key's limit is {key.tpm} per minute; lower max_tokens.",
                                          code="rate_limit_exceeded", headers=ticket.headers)
                    raise OpenAIError(429, f"Rate limit reached for tokens: {key.tpm} per minute for "
                                           f"this key (this request may use {cost}).",
                                      code="rate_limit_exceeded",
                                      retry_after_s=retry_after_s(r.retry_ms), headers=ticket.headers)
                ticket.reserved_tokens, ticket.tpm_bucket = cost, r.bucket
            await self._take_budget(ticket, key, tier, cost, now)
            if key.max_concurrent is not None:
                name = f"conc:{key.id}"
                ok, _ = await self.counters.acquire(name, key.max_concurrent, CONCURRENCY_TTL_S)
                if not ok:
                    raise OpenAIError(429, f"Too many concurrent requests: this key allows "
                                           f"{key.max_concurrent} at a time.", code="rate_limit_exceeded",
                                      retry_after_s=1, headers=ticket.headers)
                ticket.concurrency = name
        except CountersUnavailable:
            await self.release(ticket)
            raise _counters_down() from None
        except OpenAIError:
            await self.release(ticket)
            raise
        return ticket

    async def _take_budget(self, ticket: Ticket, key: KeyInfo, tier: str, tokens: int, now: float) -> None:
        limit = key.budget_tokens if key.budget_tokens is not None else (
            int(key.budget_usd * 1_000_000) if key.budget_usd is not None else None)
        if limit is None or key.budget_period is None:
            return
        start = period_start(now, key.budget_period)
        name = f"budget:{key.id}:{start}"
        units = self._units(key, tier, tokens)
        ttl = int(period_end(start, key.budget_period) - now) + 86_400
        ok, spent = await self.counters.take_budget(name, limit, units, None, ttl)
        if spent == NEEDS_SEED:  # first use this period (or Redis restarted): from the database
            tok, usd = await self._db(self.store.spent, key.id, start)
            seed = tok if key.budget_tokens is not None else int(usd * 1_000_000)
            ok, spent = await self.counters.take_budget(name, limit, units, seed, ttl)
        if not ok:
            what = (f"{key.budget_tokens} tokens" if key.budget_tokens is not None
                    else f"${key.budget_usd:.2f}")
            raise OpenAIError(429, f"This key's budget of {what} per {key.budget_period} is spent.",
                              code="insufficient_quota", type_="insufficient_quota",
                              headers=ticket.headers)
        ticket.budget_name, ticket.budget_reserved = name, units

    async def release(self, ticket: Ticket) -> None:
        """Give back everything a refused or failed request reserved."""
        await self.finish(ticket, 0, 0, status=0, endpoint="", record=False)

    async def finish(self, ticket: Ticket, prompt_tokens: int, completion_tokens: int,
                     status: int, endpoint: str, tier: str | None = None, record: bool = True) -> None:
        """Reconcile the reservation to what vLLM reported, and queue the usage event."""
        key = ticket.principal.key
        if key is None:
            return
        tier = tier or ticket.tier
        used = prompt_tokens + completion_tokens
        now = self._clock()
        try:
            if ticket.tpm_bucket is not None:
                await self.counters.adjust_window(f"tpm:{key.id}", ticket.tpm_bucket,
                                                  used - ticket.reserved_tokens, int(now * 1000),
                                                  MINUTE_MS)
                ticket.tpm_bucket = None
            if ticket.budget_name is not None:
                await self.counters.adjust_budget(ticket.budget_name,
                                                  self._units(key, tier, used) - ticket.budget_reserved)
                ticket.budget_name = None
            if ticket.concurrency is not None:
                await self.counters.release(ticket.concurrency)
                ticket.concurrency = None
        except Exception as exc:  # after the response: log, never raise
            log.warning("could not reconcile limits for a request: %s", type(exc).__name__)
        if record and self._on_usage is not None and (status < 400 or status == 499):
            self._on_usage(self.usage_event(key, tier, endpoint, status, prompt_tokens,
                                            completion_tokens, now))

    def usage_event(self, key: KeyInfo, tier: str, endpoint: str, status: int, prompt: int,
                    completion: int, now: float) -> UsageEvent:
        tokens = prompt + completion
        return UsageEvent(ts=now, key_id=key.id, team=key.team, tier=tier, endpoint=endpoint,
                          status=status, prompt_tokens=prompt, completion_tokens=completion,
                          cost_usd=tokens * self._price.get(tier, 0.0) / 1000,
                          strongest_cost_usd=tokens * self._price.get(self._strongest, 0.0) / 1000)


def _invalid_key() -> OpenAIError:
    return OpenAIError(401, "Incorrect API key provided. Send 'Authorization: Bearer <key>'.",
                       code="invalid_api_key")


def _counters_down() -> OpenAIError:
    return OpenAIError(503, "Rate-limit counters are unavailable; retry shortly.",
                       code="limits_unavailable", retry_after_s=2)
