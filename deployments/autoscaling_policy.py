"""The `queue_depth` autoscaling policy: scale a tier on requests still waiting for output.

Serve's default policy scales on ongoing requests per replica (running + queued). For a vLLM
replica that count says little: an engine batches dozens of sequences, so twelve running
streams may all be served at full speed, while a long prompt or a full KV cache makes a few
wait. What the user feels is the wait before the first output. Each replica (TierServer)
reports, as a Serve custom autoscaling metric, the time-averaged number of its requests that
have had no output yet (queued in the engine, in prefill; a non-streaming request until its
answer). By Little's law that is the replica's arrival rate times its mean time to first
output, so it rises when either load or TTFT does. Requests queued at Serve's handles (every
replica at max_ongoing_requests) wait too and count with them.

The policy:
- scales up when the waiting requests exceed `target_queue_depth` per replica, to
  waiting / target_queue_depth replicas (like Serve's default does with ongoing requests);
- never scales up on ongoing requests alone: an engine running everything it holds needs no
  new replica;
- scales down only when both the waiting requests and the ongoing ones
  (`target_ongoing_requests` per replica) fit on fewer replicas.

Serve wraps it (`_apply_autoscaling_config`): min/max bounds, up/downscale delays, scaling
factors and the cold start from zero are Serve's, as for the default policy. The controller
unpickles this module by value, so it imports nothing from Tierserve.
"""

from __future__ import annotations

import logging
import math
import time
from typing import Any

# Serve's own logger: the lines land in the controller's log, beside its scaling decisions.
logger = logging.getLogger("ray.serve")
# The custom metric each replica reports (TierServer.record_autoscaling_stats).
WAITING_METRIC = "tierserve_waiting_requests"


class WaitingGauge:
    """Requests of one replica with no output yet, averaged over time between two reads.

    Serve samples a replica's custom metrics every few seconds; the wait before a first token
    is often shorter, so an instantaneous count would mostly read zero. The integral of the
    count since the last read, over the time elapsed, is exact whatever the sampling period."""

    def __init__(self, clock=time.monotonic) -> None:
        self._clock = clock
        self._count = 0
        self._area = 0.0
        self._since = self._last = clock()

    def _advance(self) -> None:
        now = self._clock()
        self._area += self._count * (now - self._last)
        self._last = now

    def start(self) -> None:
        self._advance()
        self._count += 1

    def first_output(self) -> None:
        self._advance()
        self._count = max(0, self._count - 1)

    def read(self) -> float:
        """Mean waiting count since the previous read; starts the next interval."""
        self._advance()
        span = self._last - self._since
        mean = self._area / span if span > 0 else float(self._count)
        self._area, self._since = 0.0, self._last
        return mean


def waiting_requests(ctx: Any) -> float:
    """Requests waiting for their first output: in the replicas (their reported averages)
    plus those queued at Serve's handles for a free replica slot."""
    per_replica = (ctx.aggregated_metrics or {}).get(WAITING_METRIC, {})
    return sum(per_replica.values()) + float(ctx.total_queued_requests or 0)


def desired_replicas(*, replicas: int, waiting: float, ongoing: float, target_queue_depth: float,
                     target_ongoing_requests: float) -> float:
    """The policy's decision before Serve applies bounds and delays (see the module doc)."""
    by_queue = waiting / target_queue_depth
    if by_queue > replicas:
        return by_queue
    return min(float(replicas), max(by_queue, ongoing / target_ongoing_requests))


class QueueDepthPolicy:
    """Serve custom policy (AutoscalingPolicy.policy_function): one instance per deployment,
    called every control loop tick with Serve's AutoscalingContext."""

    def __init__(self, target_queue_depth: float = 1.0) -> None:
        if target_queue_depth <= 0:
            raise ValueError("target_queue_depth must be > 0")
        self.target_queue_depth = target_queue_depth
        self._last_wanted: int | None = None

    def __call__(self, ctx: Any) -> tuple[float, dict[str, Any]]:
        if ctx.current_num_replicas == 0:  # Serve's wrapper cold-starts on any request
            return ctx.target_num_replicas, {}
        waiting = waiting_requests(ctx)
        desired = desired_replicas(
            replicas=ctx.current_num_replicas, waiting=waiting, ongoing=ctx.total_num_requests,
            target_queue_depth=self.target_queue_depth,
            target_ongoing_requests=ctx.config.get_target_ongoing_requests())
        wanted = math.ceil(desired)
        if wanted != self._last_wanted:  # say why, once per change of mind
            self._last_wanted = wanted
            logger.info("queue_depth %s: %d replica(s), %.2f waiting, %.1f ongoing -> %.2f wanted",
                        ctx.deployment_name, ctx.current_num_replicas, waiting,
                        ctx.total_num_requests, desired)
        return desired, {"waiting_requests": round(waiting, 3)}
