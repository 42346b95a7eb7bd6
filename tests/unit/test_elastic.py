"""Suspended and scaled-to-zero tiers at the ingress (deployments/elastic.py), the pool plan of
the local multi-node cluster (tooling/cluster.py): logic only, no Ray."""

from __future__ import annotations

import asyncio

import pytest

from app.config import load_config
from app.config.schema import FallbackConfig, TierserveConfig
from app.http.errors import OpenAIError
from app.protocol.internal import RouteDecision, TierCall
from deployments.dispatch import Dispatcher
from deployments.elastic import avoid_suspended, suspended_tiers
from tooling.cluster import cluster_serve_config, plan_workers, pool_cpus
from tooling.local_cluster import StackError


def _with_suspended(name: str) -> TierserveConfig:
    config = load_config("local-elastic")
    tiers = [t.model_copy(update={"autoscaling": t.autoscaling.model_copy(
        update={"min_replicas": 0, "max_replicas": 0, "initial_replicas": None})}) if t.name == name else t
        for t in config.tiers]
    return config.model_copy(update={"tiers": tiers})


def test_a_named_suspended_tier_is_an_explicit_error_naming_it() -> None:
    config = _with_suspended("reasoning")
    assert suspended_tiers(config) == {"reasoning"}
    for reason in ("model", "header", "key:model"):
        with pytest.raises(OpenAIError) as caught:
            avoid_suspended(RouteDecision(tier="reasoning", reason=reason), config)
        err = caught.value
        assert err.status == 503 and err.code == "tier_suspended" and "'reasoning'" in err.message
        assert "retry-after" in err.headers


def test_an_automatic_choice_of_a_suspended_tier_falls_back() -> None:
    config = _with_suspended("reasoning")
    moved = avoid_suspended(RouteDecision(tier="reasoning", reason="score", fallbacks=["fast"]), config)
    assert (moved.tier, moved.fallbacks) == ("fast", [])
    assert moved.reason == "fallback:suspended:reasoning"
    # no fallback left by the router: the default tier, if it is not suspended itself
    assert avoid_suspended(RouteDecision(tier="reasoning", reason="rule:x"), config).tier == "fast"
    kept = avoid_suspended(RouteDecision(tier="fast", reason="score", fallbacks=["reasoning"]), config)
    assert (kept.tier, kept.fallbacks) == ("fast", [])
    untouched = RouteDecision(tier="fast", reason="score", fallbacks=["reasoning"])
    assert avoid_suspended(untouched, load_config("local-elastic")) is untouched


class _Gen:
    def __init__(self, delay_s: float) -> None:
        self._delay_s = delay_s

    async def __anext__(self) -> list[str]:
        await asyncio.sleep(self._delay_s)
        return ["data: {}\n\n"]

    def cancel(self) -> None:
        pass


class _Tier:
    def __init__(self, delay_s: float) -> None:
        self.generate, self._delay_s = self, delay_s

    def options(self, **_: object) -> _Tier:
        return self

    def remote(self, call: TierCall) -> _Gen:
        return _Gen(self._delay_s)


class _Nothing:
    def __getattr__(self, _: str) -> _Nothing:
        return self

    def __call__(self, *a: object, **k: object) -> _Nothing:
        return self


def test_a_cold_tier_gets_its_cold_start_on_top_of_the_first_token_timeout() -> None:
    config = load_config("local-elastic")
    reasoning = config.tier("reasoning").model_copy(update={"cold_start_timeout_s": 0.5})
    fallback = FallbackConfig(first_token_timeout_s=0.2, backoff_ms=0, max_attempts=1)
    call = TierCall(request_id="r", endpoint="chat", body={"stream": True})
    decision = RouteDecision(tier="reasoning", reason="model")

    def opened(cold: bool) -> bool:
        d = Dispatcher({"reasoning": _Tier(0.4)}, _Nothing(), fallback, _Nothing(), 1, [reasoning],
                       cold=lambda tier: cold)
        try:
            asyncio.run(d.open(call, decision))
        except OpenAIError:
            return False
        return True

    assert opened(cold=True)  # 0.4 s start < 0.2 s + 0.5 s
    assert not opened(cold=False)  # warm: the first-token timeout alone


def test_cluster_plan_deals_pools_round_robin_and_sizes_nodes() -> None:
    config = load_config("local-elastic")
    assert [w.pool for w in plan_workers(config, 3)] == ["pool_fast", "pool_reasoning", "pool_fast"]
    # fast: 2 replicas x (1 actor CPU + 1 engine CPU); reasoning: 1 x 2
    assert (pool_cpus(config, "pool_fast"), pool_cpus(config, "pool_reasoning")) == (4, 2)
    with pytest.raises(StackError, match="each needs a node"):
        plan_workers(config, 1)
    with pytest.raises(StackError, match="names no node pools"):
        plan_workers(load_config("local-cpu"), 2)
    assert cluster_serve_config(config, 8123)["proxy_location"] == "HeadOnly"
