"""The `queue_depth` autoscaling policy: its decision, run through Serve's own wrapper (bounds,
delays, cold start) with Serve's AutoscalingContext; the replica's time-averaged waiting gauge;
and the tier config that selects it."""

from __future__ import annotations

import asyncio

import pytest
from ray.serve._private.common import DeploymentID, ReplicaID
from ray.serve._private.constants import SERVE_AUTOSCALING_DECISION_TIMESTAMP_KEY
from ray.serve.autoscaling_policy import _apply_autoscaling_config, _apply_delay_logic
from ray.serve.config import AutoscalingConfig as ServeAutoscaling
from ray.serve.config import AutoscalingContext

from app.config import load_config
from app.config.schema import QUEUE_DEPTH_POLICY, AutoscalingConfig
from app.graph import llm_config_for
from deployments.autoscaling_policy import (
    WAITING_METRIC,
    QueueDepthPolicy,
    WaitingGauge,
    desired_replicas,
)

DEP = DeploymentID(name="tier-fast", app_name="tierserve")


def _ctx(*, replicas: int, ongoing: float, waiting: list[float], queued: float = 0, target: int | None = None,
         state: dict | None = None, config: ServeAutoscaling | None = None, now: float = 1000.0,
         ) -> AutoscalingContext:
    ids = [ReplicaID(unique_id=f"r{i}", deployment_id=DEP) for i in range(replicas)]
    config = config or ServeAutoscaling(min_replicas=1, max_replicas=4, target_ongoing_requests=2,
                                        upscale_delay_s=0, downscale_delay_s=0)
    return AutoscalingContext(
        deployment_id=DEP, deployment_name=DEP.name, app_name=DEP.app_name,
        current_num_replicas=replicas, target_num_replicas=replicas if target is None else target,
        running_replicas=ids, total_num_requests=ongoing, total_queued_requests=queued,
        aggregated_metrics={WAITING_METRIC: dict(zip(ids, waiting, strict=True))} if waiting else {},
        raw_metrics={}, capacity_adjusted_min_replicas=config.min_replicas,
        capacity_adjusted_max_replicas=config.max_replicas, policy_state=state or {},
        last_scale_up_time=None, last_scale_down_time=None, current_time=now, config=config)


def _serve_policy(target_queue_depth: float = 1.0):
    """The policy as Serve's controller runs it: wrapped with scaling factors, delays and the
    cold start (`_apply_autoscaling_config`), then clipped to the bounds (AutoscalingState's
    apply_bounds)."""
    wrapped = _apply_autoscaling_config(QueueDepthPolicy(target_queue_depth))

    def decide(ctx: AutoscalingContext) -> tuple[int, dict]:
        decision, state = wrapped(ctx)
        bounded = max(ctx.capacity_adjusted_min_replicas, min(ctx.capacity_adjusted_max_replicas, decision))
        return bounded, state
    return decide


@pytest.mark.parametrize(("replicas", "waiting", "ongoing", "want"), [
    (1, 3.0, 12, 3.0),    # three requests waiting per replica: three replicas' worth
    (1, 0.4, 12, 1.0),    # twelve running, few waiting: the engine keeps up, no new replica
    (2, 1.0, 12, 2.0),    # waiting fits two replicas, ongoing wants more: stay (never up on ongoing)
    (2, 0.2, 2, 1.0),     # both fit one replica: down
    (3, 2.5, 2, 2.5),     # ongoing fits one, but the waiting still need 2.5: down to that, not 1
    (2, 0.0, 0, 0.0),     # idle
])
def test_decision(replicas, waiting, ongoing, want):
    assert desired_replicas(replicas=replicas, waiting=waiting, ongoing=ongoing, target_queue_depth=1,
                            target_ongoing_requests=2) == pytest.approx(want)


def test_the_target_scales_the_queue_a_replica_may_have():
    assert desired_replicas(replicas=1, waiting=3, ongoing=3, target_queue_depth=4,
                            target_ongoing_requests=8) == 0.75  # Serve rounds up: one replica
    assert desired_replicas(replicas=1, waiting=3, ongoing=3, target_queue_depth=1,
                            target_ongoing_requests=8) == 3


def test_scales_up_on_waiting_requests_within_the_tier_bounds():
    decision, state = _serve_policy()(_ctx(replicas=1, ongoing=12, waiting=[6.0]))
    assert decision == 4  # 6 wanted, capped at max_replicas by Serve's bounds
    assert state["waiting_requests"] == 6.0


def test_requests_queued_at_serve_handles_count_as_waiting():
    decision, _ = _serve_policy()(_ctx(replicas=1, ongoing=70, waiting=[0.5], queued=1.5))
    assert decision == 2


def test_many_running_requests_alone_do_not_add_a_replica():
    # Serve's default policy would want 12 / 2 = 6 replicas here.
    decision, _ = _serve_policy()(_ctx(replicas=1, ongoing=12, waiting=[0.3]))
    assert decision == 1


def test_scale_down_only_when_load_and_queue_fit_fewer_replicas():
    policy = _serve_policy()
    assert policy(_ctx(replicas=2, ongoing=2, waiting=[0.1, 0.1]))[0] == 1
    assert policy(_ctx(replicas=2, ongoing=2, waiting=[0.9, 0.9]))[0] == 2


def test_the_tier_upscale_delay_holds_the_decision_back():
    config = ServeAutoscaling(min_replicas=1, max_replicas=2, target_ongoing_requests=2,
                              upscale_delay_s=3, downscale_delay_s=30)
    policy = _serve_policy()
    decision, state = policy(_ctx(replicas=1, ongoing=12, waiting=[3.0], config=config, now=1000.0))
    assert decision == 1  # wanted 2, but the delay has only started
    # A tick past the delay scales up (Serve's delay logic reads the wall clock).
    started = state[SERVE_AUTOSCALING_DECISION_TIMESTAMP_KEY]
    assert _apply_delay_logic(2, 1, config, dict(state), _now=started + 3.1)[0] == 2
    assert _apply_delay_logic(2, 1, config, dict(state), _now=started + 2.0)[0] == 1


def test_a_tier_at_zero_cold_starts_on_a_request():
    config = ServeAutoscaling(min_replicas=0, max_replicas=1, initial_replicas=0, target_ongoing_requests=8,
                              upscale_delay_s=0, downscale_delay_s=120)
    policy = _serve_policy()
    assert policy(_ctx(replicas=0, ongoing=1, waiting=[], target=0, config=config))[0] == 1
    assert policy(_ctx(replicas=0, ongoing=0, waiting=[], target=0, config=config))[0] == 0


def test_replicas_that_have_not_reported_yet_count_as_not_waiting():
    decision, state = _serve_policy()(_ctx(replicas=2, ongoing=4, waiting=[]))
    assert (decision, state["waiting_requests"]) == (2, 0.0)


def test_waiting_gauge_is_a_time_average_between_reads():
    now = [0.0]
    gauge = WaitingGauge(clock=lambda: now[0])
    gauge.start()            # t=0: one waiting
    now[0] = 1.0
    gauge.start()            # t=1: two waiting
    now[0] = 2.0
    gauge.first_output()     # t=2: one
    now[0] = 4.0
    assert gauge.read() == pytest.approx((1 * 1 + 2 * 1 + 1 * 2) / 4)
    gauge.first_output()     # t=4: none
    now[0] = 6.0
    assert gauge.read() == 0.0
    assert gauge.read() == 0.0  # no time elapsed: the current count


def _bare_tier_server():
    """A TierServer without its engine: only the waiting gauge that generate() keeps."""
    from deployments.tier import TierServer

    server = TierServer.__new__(TierServer)
    server._waiting = WaitingGauge()
    return server


@pytest.mark.filterwarnings("ignore:coroutine .LLMServer.__del__. was never awaited")
def test_tier_server_counts_a_request_as_waiting_until_its_first_output():
    server = _bare_tier_server()
    seen: list[float] = []

    async def items(call):
        seen.append(server._waiting._count)  # before the first item
        yield "first"
        seen.append(server._waiting._count)  # after it
        yield "second"

    server._generate = items

    async def consume() -> list:
        return [item async for item in server.generate(None)]

    assert asyncio.run(consume()) == ["first", "second"]
    assert seen == [1, 0]

    async def abandon() -> None:  # a client gone before any output: no longer waiting
        gen = server.generate(None)
        server._generate = _never_yields
        task = asyncio.ensure_future(gen.__anext__())
        await asyncio.sleep(0.01)
        assert server._waiting._count == 1
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        await gen.aclose()

    asyncio.run(abandon())
    assert server._waiting._count == 0


@pytest.mark.filterwarnings("ignore:coroutine .LLMServer.__del__. was never awaited")
def test_closing_generate_closes_the_engine_stream_at_once():
    server = _bare_tier_server()
    closed: list[bool] = []

    async def items(call):
        try:
            yield "first"
            yield "second"
        finally:
            closed.append(True)  # the engine stream's own cleanup: vLLM aborts the request here

    server._generate = items

    async def first_then_close() -> None:
        gen = server.generate(None)
        assert await gen.__anext__() == "first"
        await gen.aclose()
        assert closed == [True]  # already, not when the generator is collected

    asyncio.run(first_then_close())


async def _never_yields(call):
    await asyncio.sleep(3600)
    yield "never"


def test_queue_depth_config_becomes_serves_custom_policy():
    auto = AutoscalingConfig(max_replicas=2, policy="queue_depth", target_queue_depth=2.5)
    serve = ServeAutoscaling(**auto.to_serve())
    assert serve.policy.policy_function == QUEUE_DEPTH_POLICY
    assert serve.policy.policy_kwargs == {"target_queue_depth": 2.5}
    policy = serve.policy.get_policy()(**serve.policy.policy_kwargs)  # as the controller builds it
    assert isinstance(policy, QueueDepthPolicy) and policy.target_queue_depth == 2.5


def test_the_default_policy_leaves_serves_config_as_it_was():
    serve = AutoscalingConfig(max_replicas=2).to_serve()
    assert "policy" not in serve and "target_queue_depth" not in serve
    assert ServeAutoscaling(**serve).policy.is_default_policy_function()


def test_a_tier_with_queue_depth_deploys_with_it():
    tier = load_config("local-elastic").tier("fast")
    assert tier.autoscaling.policy == "ongoing_requests"  # the measured default (README Elasticity)
    by_queue = tier.autoscaling.model_copy(update={"policy": "queue_depth"})
    queue = tier.model_copy(update={"autoscaling": by_queue})
    auto = llm_config_for(queue).deployment_config["autoscaling_config"]
    assert auto["policy"]["policy_function"] == QUEUE_DEPTH_POLICY
    assert (auto["min_replicas"], auto["max_replicas"]) == (1, 2)
    suspended = AutoscalingConfig(min_replicas=0, max_replicas=0, policy="queue_depth").to_serve()
    assert suspended["max_replicas"] == 1 and suspended["policy"]["policy_function"] == QUEUE_DEPTH_POLICY


def test_an_unknown_policy_is_a_config_error():
    with pytest.raises(ValueError):
        AutoscalingConfig(policy="ttft")
    with pytest.raises(ValueError):
        AutoscalingConfig(target_queue_depth=0)
