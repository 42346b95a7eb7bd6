"""Send one request to its tier, falling back to others before the first token.

Retries happen only until something has been received from a tier: once a token
could have reached the client, a failure ends the stream instead.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from typing import Any

from ray.serve.exceptions import BackPressureError
from ray.serve.handle import DeploymentHandle

from app.config.schema import FallbackConfig
from app.http.errors import OpenAIError
from app.protocol.internal import RouteDecision, TierCall, TierError
from deployments.metrics import IngressMetrics

logger = logging.getLogger("ray.serve.tierserve.dispatch")


@dataclass
class Opened:
    """A tier that accepted the request, with its first output in hand."""

    tier: str
    reason: str
    first: Any  # TierFinal, TierError (a 4xx from the engine) or a list of SSE strings
    rest: Any  # the DeploymentResponseGenerator, to read and to cancel
    attempts: int


class Dispatcher:
    def __init__(self, tiers: dict[str, DeploymentHandle], router: DeploymentHandle,
                 fallback: FallbackConfig, metrics: IngressMetrics, retry_after_s: int) -> None:
        self._tiers = tiers
        self._router = router
        self._fallback = fallback
        self._metrics = metrics
        self._retry_after_s = retry_after_s

    async def open(self, call: TierCall, decision: RouteDecision) -> Opened:
        plan = [decision.tier, *decision.fallbacks][: self._fallback.max_attempts]
        cause, reason = "unavailable", decision.reason
        for attempt, tier in enumerate(plan, start=1):
            if attempt > 1:
                self._metrics.retries.inc(tags={"tier": tier})
                self._metrics.fallbacks.inc(tags={"from_tier": plan[attempt - 2], "to_tier": tier,
                                                  "cause": cause})
                reason = f"fallback:{cause}"
                await asyncio.sleep(self._fallback.backoff_ms / 1000 * 2 ** (attempt - 2))
            gen = self._tiers[tier].generate.options(stream=True).remote(call)
            try:
                first = await asyncio.wait_for(gen.__anext__(), self._fallback.first_token_timeout_s)
            except asyncio.CancelledError:
                gen.cancel()
                raise
            except asyncio.TimeoutError:
                gen.cancel()
                cause = "timeout"
            except StopAsyncIteration:
                cause = "empty"
            except BackPressureError:
                cause = "overloaded"
            except Exception as exc:  # replica died, deployment missing, engine crashed
                logger.warning("tier %s failed before first token: %r", tier, exc)
                cause = "error"
            else:
                if isinstance(first, TierError) and first.code >= 500:
                    gen.cancel()
                    cause = "engine_error"
                else:
                    return Opened(tier, reason, first, gen, attempt)
            self._router.report_failure.remote(tier, cause)
        if cause == "overloaded":
            raise OpenAIError(503, "All eligible tiers are at their queue limit; retry shortly.",
                              code="overloaded", retry_after_s=self._retry_after_s)
        raise OpenAIError(503, f"No tier could serve the request ({cause}).",
                          code="tier_unavailable", retry_after_s=self._retry_after_s)
