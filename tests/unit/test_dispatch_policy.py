"""Which failures count against a tier, and what is retried where (deployments/dispatch.py)."""

from __future__ import annotations

import asyncio

import pytest
from ray.exceptions import ActorDiedError, RayTaskError
from ray.serve.exceptions import BackPressureError

from app.config.schema import FallbackConfig
from app.protocol.internal import RouteDecision, TierCall, TierError
from deployments.dispatch import INFRA_CAUSES, Dispatcher, failure_cause


class EngineDeadError(Exception):
    pass


def test_only_infrastructure_failures_count_against_a_tier() -> None:
    task_error = RayTaskError("generate", "tb", EngineDeadError("engine died"))
    assert failure_cause(ActorDiedError()) == "replica_died"
    assert failure_cause(task_error) == "engine_dead"
    assert failure_cause(TimeoutError()) == "timeout"
    assert failure_cause(BackPressureError(num_queued_requests=1, max_queued_requests=1)) == "overloaded"
    assert failure_cause(RayTaskError("generate", "tb", ValueError("bad template"))) == "error"
    assert {"overloaded", "error", "empty", "engine_error"}.isdisjoint(INFRA_CAUSES)


class _Gen:
    """A tier's streaming response: raises or yields its first item."""

    def __init__(self, first):
        self._first = first
        self.cancelled = False

    async def __anext__(self):
        if isinstance(self._first, BaseException):
            raise self._first
        return self._first

    def cancel(self):
        self.cancelled = True


class _Tier:
    def __init__(self, outcomes: list):
        self.outcomes, self.calls = list(outcomes), 0
        self.generate = self

    def options(self, **_):
        return self

    def remote(self, call):
        self.calls += 1
        return _Gen(self.outcomes.pop(0))


class _Router:
    def __init__(self):
        self.reports: list[tuple[str, str]] = []
        self.report_failure = self

    def remote(self, tier, cause):
        self.reports.append((tier, cause))


class _Counter:
    def inc(self, *a, **k):
        pass


class _Metrics:
    retries = fallbacks = _Counter()


def _dispatch(tiers: dict[str, _Tier], stream: bool = True, max_attempts: int = 2):
    router = _Router()
    d = Dispatcher(tiers, router, FallbackConfig(max_attempts=max_attempts, backoff_ms=0,
                                                 first_token_timeout_s=5), _Metrics(), 1)
    call = TierCall(request_id="r", endpoint="chat", body={"stream": stream})
    decision = RouteDecision(tier="fast", reason="score", fallbacks=["reasoning"])
    return asyncio.run(d.open(call, decision)), router


def test_a_dead_replica_is_retried_on_its_own_tier_first_and_reported() -> None:
    fast, reasoning = _Tier([ActorDiedError(), ["data: x"]]), _Tier([["data: y"]])
    opened, router = _dispatch({"fast": fast, "reasoning": reasoning})
    assert (opened.tier, opened.reason, opened.attempts) == ("fast", "retry:replica_died", 2)
    # the tier served the retry: one dead replica does not make it unhealthy
    assert router.reports == [] and reasoning.calls == 0


def test_a_tier_whose_retry_also_fails_is_reported_and_falls_back() -> None:
    fast = _Tier([ActorDiedError(), ActorDiedError()])
    opened, router = _dispatch({"fast": fast, "reasoning": _Tier([["data: y"]])})
    assert (opened.tier, opened.reason, opened.attempts) == ("reasoning", "fallback:replica_died", 3)
    assert router.reports == [("fast", "replica_died")]


def test_a_full_queue_falls_back_without_marking_the_tier_unhealthy() -> None:
    busy = BackPressureError(num_queued_requests=1, max_queued_requests=1)
    opened, router = _dispatch({"fast": _Tier([busy]), "reasoning": _Tier([["data: y"]])})
    assert (opened.tier, opened.reason) == ("reasoning", "fallback:overloaded")
    assert router.reports == []


def test_a_client_error_from_the_engine_is_returned_not_retried() -> None:
    bad = TierError(message="bad", type="BadRequestError", code=400)
    fast = _Tier([bad])
    opened, router = _dispatch({"fast": fast, "reasoning": _Tier([])})
    assert opened.first == bad and fast.calls == 1 and router.reports == []


def test_non_streaming_requests_get_the_total_timeout_not_the_first_token_one() -> None:
    from app.config.schema import TierConfig

    tier = TierConfig(name="fast", model_source="m", served_model_name="m", max_model_len=64,
                      request_timeout_s=900)
    d = Dispatcher({}, _Router(), FallbackConfig(first_token_timeout_s=3), _Metrics(), 1, [tier])
    stream = TierCall(request_id="r", endpoint="chat", body={"stream": True})
    whole = TierCall(request_id="r", endpoint="chat", body={})
    assert d.first_output_timeout("fast", stream) == 3
    assert d.first_output_timeout("fast", whole) == 900


@pytest.mark.parametrize("max_attempts", [1, 2])
def test_attempts_stay_bounded(max_attempts: int) -> None:
    from app.http.errors import OpenAIError

    tiers = {"fast": _Tier([ActorDiedError() for _ in range(5)]),
             "reasoning": _Tier([ActorDiedError() for _ in range(5)])}
    with pytest.raises(OpenAIError) as caught:
        _dispatch(tiers, max_attempts=max_attempts)
    assert caught.value.status == 503 and caught.value.headers["retry-after"] == "1"
    # one same-tier retry after a replica death on top of max_attempts, never more
    assert sum(t.calls for t in tiers.values()) == max_attempts + 1


def test_a_replica_death_on_the_tier_cuts_a_waiting_call_to_the_grace() -> None:
    """A call queued for a tier whose replica just died must not sit out its full timeout."""
    from deployments.dispatch import ReplicaDeaths, first_output

    class _Never:
        async def __anext__(self):
            await asyncio.sleep(3600)

    async def scenario():
        deaths = ReplicaDeaths()
        waiting = asyncio.ensure_future(first_output(_Never(), 3600, deaths.event("fast"), 0.05))
        await asyncio.sleep(0.05)
        assert not waiting.done()
        deaths.observed("reasoning")  # another tier's death changes nothing
        await asyncio.sleep(0.05)
        assert not waiting.done()
        deaths.observed("fast")
        done, _ = await asyncio.wait({waiting}, timeout=30)  # the grace, not the hour
        assert waiting in done
        with pytest.raises(asyncio.TimeoutError):
            waiting.result()
        assert not deaths.event("fast").is_set()  # later calls start afresh...
        assert "fast" in deaths.suspect  # ...but on a short leash until the tier serves again
        deaths.served("fast")
        assert deaths.suspect == {"reasoning"}

    asyncio.run(scenario())
