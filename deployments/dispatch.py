"""Send one request to its tier, falling back to others before the first token.

Retries happen only until something has been received from a tier: once a token
could have reached the client, a failure ends the stream instead.

Only infrastructure failures (a dead replica or engine, a tier silent past its
timeout) count against a tier's health; a full queue or an error the request
itself caused never does, so no client can push `auto` traffic off a tier.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ray.exceptions import RayActorError, RayTaskError
from ray.serve.exceptions import BackPressureError, DeploymentUnavailableError, ReplicaUnavailableError
from ray.serve.handle import DeploymentHandle

from app.config.schema import FallbackConfig, TierConfig
from app.http.errors import OpenAIError
from app.protocol.internal import RouteDecision, TierCall, TierError
from deployments.metrics import IngressMetrics

logger = logging.getLogger("ray.serve.tierserve.dispatch")

# Causes that say the tier (not the request) is broken: reported to the router.
INFRA_CAUSES = frozenset({"replica_died", "engine_dead", "timeout"})


@dataclass
class Opened:
    """A tier that accepted the request, with its first output in hand."""

    tier: str
    reason: str
    first: Any  # TierFinal, TierError (a 4xx from the engine) or a list of SSE strings
    rest: Any  # the DeploymentResponseGenerator, to read and to cancel
    attempts: int


def failure_cause(exc: BaseException) -> str:
    """Why a tier call failed before its first output, in one word."""
    if isinstance(exc, asyncio.TimeoutError):
        return "timeout"
    if isinstance(exc, BackPressureError):
        return "overloaded"
    if isinstance(exc, StopAsyncIteration):
        return "empty"
    if isinstance(exc, (RayActorError, ReplicaUnavailableError, DeploymentUnavailableError)):
        return "replica_died"
    if isinstance(exc, RayTaskError) and "EngineDead" in type(exc.cause).__name__ + str(exc.cause):
        return "engine_dead"
    return "error"  # raised by the request itself (e.g. input vLLM could not handle)


def attempt_plan(decision: RouteDecision, max_attempts: int) -> list[str]:
    """The decided tier, then its fallbacks, at most `max_attempts` in all."""
    return [decision.tier, *decision.fallbacks][:max_attempts]


class ReplicaDeaths:
    """Per tier, an event set when a replica of it is seen to die, and whether the tier is
    still suspect (no first output from it since). Calls on a suspect tier, and calls already
    waiting when the death is seen, get a short grace instead of their full timeout: after a
    death Serve queues calls at the handle until a replica runs, which may be a cold start."""

    def __init__(self) -> None:
        self._events: dict[str, asyncio.Event] = {}
        self.suspect: set[str] = set()

    def event(self, tier: str) -> asyncio.Event:
        return self._events.setdefault(tier, asyncio.Event())

    def observed(self, tier: str) -> None:
        self.suspect.add(tier)
        self._events.pop(tier, asyncio.Event()).set()  # wakes current waiters; later calls get a fresh one

    def served(self, tier: str) -> None:
        self.suspect.discard(tier)


async def first_output(gen: Any, timeout_s: float, death: asyncio.Event, grace_s: float) -> Any:
    """The call's first output within `timeout_s`, or within `grace_s` of a replica death on
    its tier, whichever ends first; asyncio.TimeoutError otherwise."""
    nxt = asyncio.ensure_future(gen.__anext__())
    nxt.add_done_callback(_retrieve)  # a call given up on ends in an error nobody reads
    dying = asyncio.ensure_future(death.wait())
    try:
        done, _ = await asyncio.wait({nxt, dying}, timeout=timeout_s,
                                     return_when=asyncio.FIRST_COMPLETED)
        if nxt not in done and dying in done:
            done, _ = await asyncio.wait({nxt}, timeout=grace_s)
        if nxt not in done:
            raise TimeoutError
        return nxt.result()
    finally:
        dying.cancel()
        if not nxt.done():
            nxt.cancel()


def _retrieve(task: asyncio.Future) -> None:
    if not task.cancelled():
        task.exception()


class Dispatcher:
    def __init__(self, tiers: dict[str, DeploymentHandle], router: DeploymentHandle,
                 fallback: FallbackConfig, metrics: IngressMetrics, retry_after_s: int,
                 tier_configs: list[TierConfig] | None = None,
                 cold: Callable[[str], bool] | None = None) -> None:
        """`cold(tier)`: whether the tier has no running replica (deployments/elastic.py)."""
        self._tiers = tiers
        self._router = router
        self._fallback = fallback
        self._metrics = metrics
        self._retry_after_s = retry_after_s
        self._total_timeout = {t.name: t.request_timeout_s for t in tier_configs or []}
        self._cold = cold
        self._cold_start = {t.name: t.cold_start_timeout_s for t in tier_configs or []}
        self.deaths = ReplicaDeaths()

    def first_output_timeout(self, tier: str, call: TierCall) -> float:
        """Streams: the first-token timeout. Non-streaming: the whole answer is the first
        output, so the tier's total request timeout applies instead."""
        if call.body.get("stream"):
            return self._fallback.first_token_timeout_s
        return self._total_timeout.get(tier, self._fallback.first_token_timeout_s)

    def replica_died(self, tier: str) -> None:
        """A replica of `tier` died (seen here or by the stream relay)."""
        self.deaths.observed(tier)

    async def open(self, call: TierCall, decision: RouteDecision, after_death: bool = False) -> Opened:
        """`after_death`: the call continues one whose replica of `decision.tier` died, so its
        first attempt there is held to the short grace too."""
        plan = attempt_plan(decision, self._fallback.max_attempts)
        cause, reason = "unavailable", decision.reason
        retried_same_tier = after_death
        attempt = 0
        while attempt < len(plan):
            tier = plan[attempt]
            attempt += 1
            if attempt > 1:
                self._metrics.retries.inc(tags={"tier": tier})
                if tier != plan[attempt - 2]:
                    self._metrics.fallbacks.inc(tags={"from_tier": plan[attempt - 2], "to_tier": tier,
                                                      "cause": cause})
                reason = f"fallback:{cause}" if tier != decision.tier else f"retry:{cause}"
                await asyncio.sleep(self._fallback.backoff_ms / 1000 * 2 ** (attempt - 2))
            timeout = self.first_output_timeout(tier, call)
            if (retried_same_tier and tier == decision.tier) or tier in self.deaths.suspect:
                timeout = min(timeout, self._fallback.replica_retry_timeout_s)
            if self._cold is not None and self._cold(tier) and (
                    attempt == len(plan) or tier not in self.deaths.suspect):
                # Serve queues the call while a replica starts (scale from zero, or a lost
                # node's replica rescheduled); a suspect tier waits only when it is the last hope.
                timeout += self._cold_start.get(tier, 0)
            death = self.deaths.event(tier)
            gen = self._tiers[tier].generate.options(stream=True).remote(call)
            try:
                first = await first_output(gen, timeout, death, self._fallback.replica_retry_timeout_s)
            except asyncio.CancelledError:
                gen.cancel()
                raise
            except Exception as exc:  # StopAsyncIteration included
                gen.cancel()
                cause = failure_cause(exc)
                logger.warning("tier %s failed before its first output (%s): %r", tier, cause, exc)
            else:
                if not (isinstance(first, TierError) and first.code >= 500):
                    self.deaths.served(tier)
                    return Opened(tier, reason, first, gen, attempt)
                gen.cancel()
                cause = "engine_dead" if "dead" in first.message.lower() else "engine_error"
            if cause == "replica_died":
                self.replica_died(tier)
            if cause == "replica_died" and not retried_same_tier:
                # Serve routes the retry to another replica of the same tier, if it has one;
                # the tier counts as failed only if that fails too.
                retried_same_tier = True
                plan.insert(attempt, tier)
                plan = plan[: self._fallback.max_attempts + 1]
            elif cause in INFRA_CAUSES:
                self._router.report_failure.remote(tier, cause)
        if cause == "overloaded":
            raise OpenAIError(503, "All eligible tiers are at their queue limit; retry shortly.",
                              code="overloaded", retry_after_s=self._retry_after_s)
        raise OpenAIError(503, f"No tier could serve the request ({cause}).",
                          code="tier_unavailable", retry_after_s=self._retry_after_s)
