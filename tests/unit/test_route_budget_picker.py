"""The cost-budget picker: the cost-ladder's key, with the threshold held where recent routed
traffic spends the target share of its all-strong priced cost."""

from __future__ import annotations

import asyncio
import math
import zlib
from typing import Any

import numpy as np
import pytest

from app.config.loader import ConfigError
from app.config.schema import TierserveConfig
from app.routing.assemble import build_pipeline
from app.routing.plugins.budget_picker import budget_threshold
from tests.route_helpers import FixedScorer, request
from tooling.routing.training.calibrate import calibrate, with_thresholds
from tooling.routing.training.tiering import with_cost_ladder

WEAK, STRONG = 0.1, 1.0  # per 1k tokens


def budget_config(**params: Any) -> TierserveConfig:
    tier = {"model_source": "m", "max_model_len": 8192}
    picker = {"name": "cost-budget", "params": {"completion_tokens": 100, "length_power": 1.0,
                                                "target_cost_share": 0.4, "window": 200,
                                                "min_samples": 16, "answer_tokens": 16, **params}}
    return TierserveConfig.model_validate({
        "profile": "test",
        "tiers": [{"name": "fast", "served_model_name": "tiny-fast", "cost_per_1k_tokens": WEAK, **tier},
                  {"name": "reasoning", "served_model_name": "tiny-reasoning",
                   "cost_per_1k_tokens": STRONG, **tier}],
        "routing": {"default_tier": "fast", "weak_tier": "fast", "strong_tier": "reasoning",
                    "threshold": 0.3, "rules": [], "plugins": {"picker": picker}},
    })


class HashScorer(FixedScorer):
    """A score that varies from prompt to prompt, the same for the same prompt."""

    def score(self, features) -> float:
        return (zlib.crc32(features.text.encode()) % 1000) / 1000


def test_budget_threshold_spends_the_target_and_counts_rule_pinned_requests():
    keys, tokens = [0.9, 0.5, 0.3, 0.1], [100.0] * 4
    # All strong: 400 x 1.0; all weak: 40; 0.55 x 400 - 40 = 180 buys two upgrades of 90.
    assert budget_threshold(keys, tokens, [False] * 4, 0.1, 1.0, 0.55) == 0.5
    # A request the rules sent to strong (no key) spends 90 of it first: one upgrade left.
    t = budget_threshold(keys + [math.nan], tokens + [100.0], [False] * 4 + [True], 0.1, 1.0, 0.55)
    assert t == 0.9
    # Nothing affordable: above every key; everything affordable: the least key.
    assert budget_threshold(keys, tokens, [False] * 4, 0.1, 1.0, 0.1) > 0.9
    assert budget_threshold(keys, tokens, [False] * 4, 0.1, 1.0, 1.0) == 0.1
    assert budget_threshold([math.nan], [10.0], [True], 0.1, 1.0, 0.5) is None


def _cost_share(decisions, prompts: list[str], answer: int) -> float:
    tokens = np.array([d.features["prompt_tokens"] + answer for d in decisions])
    price = np.where([d.tier == "reasoning" for d in decisions], STRONG, WEAK)
    return float((tokens * price).sum() / (tokens * STRONG).sum())


def _route(pipeline, prompts: list[str], **kw: Any):
    async def run():
        return [await pipeline.decide(request(p, request_id=f"r{i}", **kw)) for i, p in enumerate(prompts)]
    return asyncio.run(run())


@pytest.mark.parametrize("words", [(5, 40), (200, 900)])
def test_holds_the_cost_share_whatever_the_prompt_lengths(words):
    rng = np.random.default_rng(0)
    prompts = [("word " * int(rng.integers(*words))) + f"q{i}" for i in range(600)]
    adaptive = build_pipeline(budget_config(), scorer=HashScorer(0))
    got = _route(adaptive, prompts, max_tokens=16)
    # Over the traffic after the first window, the spend sits at the 40 % target.
    assert abs(_cost_share(got[200:], prompts[200:], 16) - 0.4) <= 0.03
    # A fixed threshold (the same key, the cost-ladder picker) does not: it spends what the
    # prompt lengths make of it, far from 40 % on one of the two length ranges.
    static = with_cost_ladder(budget_config(), 100, 1.0)
    fixed = _route(build_pipeline(static, scorer=HashScorer(0)), prompts, max_tokens=16)
    assert abs(_cost_share(fixed[200:], prompts[200:], 16) - 0.4) > 0.1


def test_starts_at_the_configured_threshold_and_reports_the_one_it_used():
    pipeline = build_pipeline(budget_config(min_samples=50), scorer=HashScorer(0))
    got = _route(pipeline, [f"question number {i} " * 5 for i in range(80)])
    assert {d.thresholds[0] for d in got[:50]} == {0.3}
    assert len({d.thresholds[0] for d in got[50:]}) > 1  # adapting
    for d in got:
        picked = next(c for c in d.contributions if c.kind == "picker")
        assert picked.outcome.startswith(d.tier) and f"thresholds {d.thresholds[0]:.4g}" in picked.outcome


def test_hard_pins_stay_out_of_the_window():
    pipeline = build_pipeline(budget_config(min_samples=16), scorer=HashScorer(0))
    got = _route(pipeline, [f"pinned {i}" for i in range(40)], model="tiny-reasoning")
    assert all(d.reason == "model" for d in got)
    assert pipeline.picker.plugin.thresholds == (0.3,)  # nothing seen: still the configured one


def test_needs_a_two_tier_ladder():
    data = budget_config().model_dump()
    data["tiers"].insert(1, {**data["tiers"][0], "name": "medium", "served_model_name": "m2"})
    data["routing"] |= {"ladder": ["fast", "medium", "reasoning"], "thresholds": [0.3, 0.6]}
    with pytest.raises(ConfigError, match="two-tier ladder"):
        build_pipeline(TierserveConfig.model_validate(data))


def test_calibration_starts_the_picker_where_the_reference_spends_the_target():
    prompts = [("word " * (5 + 31 * i % 400)) + f"q{i}" for i in range(400)]
    cal = calibrate(budget_config(), prompts, [0.5, 0.5], scorer=HashScorer(0))
    assert cal.cost_target == 0.4
    # The reference prompts at that fixed threshold spend about the target.
    static = with_thresholds(budget_config(min_samples=100_000), cal.thresholds)
    got = _route(build_pipeline(static, scorer=HashScorer(0)), prompts)
    assert abs(_cost_share(got, prompts, 16) - 0.4) <= 0.03
