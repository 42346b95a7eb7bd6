"""The cost-aware ladder picker: the thresholds see score * E / (prompt tokens + E), so for the
same score a short prompt (cheap to upgrade) goes up before a long one; calibration to target
shares reads the same key."""

from __future__ import annotations

import asyncio

from app.routing.assemble import build_pipeline
from tests.route_helpers import FixedScorer, request, two_tier_config
from tooling.routing.training.calibrate import calibrate, route_all, shares_of, with_thresholds

COST = {"picker": {"name": "cost-ladder", "params": {"completion_tokens": 100}}}


def test_same_score_short_prompt_goes_up_long_one_stays():
    config = two_tier_config(threshold=0.3, plugins=COST)
    pipeline = build_pipeline(config, scorer=FixedScorer(0.6))
    short = asyncio.run(pipeline.decide(request("word " * 20)))  # ~25 tokens: key 0.6*100/125 = 0.48
    long = asyncio.run(pipeline.decide(request("word " * 400)))  # ~500 tokens: key 0.6*100/600 = 0.1
    assert (short.tier, short.reason) == ("reasoning", "score")
    assert (long.tier, long.reason) == ("fast", "score")
    # The plain ladder sends both up: the score alone is over the threshold.
    plain = build_pipeline(two_tier_config(threshold=0.3), scorer=FixedScorer(0.6))
    assert asyncio.run(plain.decide(request("word " * 400))).tier == "reasoning"


def test_key_is_bounded_and_falls_with_length():
    picker = build_pipeline(two_tier_config(plugins=COST)).picker.plugin
    keys = [picker.key(0.9, n) for n in (0, 10, 100, 1000)]
    assert keys[0] == 0.9 and keys == sorted(keys, reverse=True) and all(0 <= k <= 1 for k in keys)


class ByLength(FixedScorer):
    """Longer prompts score higher, as the hand-feature scorer tends to."""

    def score(self, features) -> float:
        return min(1.0, len(features.text) / 4000)


def test_calibration_reaches_the_share_on_the_picker_key():
    config = two_tier_config(plugins=COST)
    prompts = [("x " * (10 + 37 * i % 900)) + f"q{i}" for i in range(300)]
    cal = calibrate(config, prompts, [0.6, 0.4], scorer=ByLength(0))
    assert abs(cal.achieved["reasoning"] - 0.4) <= 0.02
    tuned = with_thresholds(config, cal.thresholds)
    assert abs(shares_of(tuned, route_all(tuned, prompts, ByLength(0)))["reasoning"] - 0.4) <= 0.02


def test_length_power_softens_the_penalty():
    def picker(power: float):
        plugins = {"picker": {"name": "cost-ladder",
                              "params": {"completion_tokens": 100, "length_power": power}}}
        return build_pipeline(two_tier_config(plugins=plugins)).picker.plugin

    full, half, none = picker(1.0), picker(0.5), picker(0.0)
    assert full.key(0.8, 300) == 0.8 * 100 / 400
    assert abs(half.key(0.8, 300) - 0.8 * (100 / 400) ** 0.5) < 1e-12
    assert none.key(0.8, 300) == 0.8  # the plain ladder's key
    # Softer: a long prompt keeps more of its score, but still less than a short one.
    assert full.key(0.8, 300) < half.key(0.8, 300) < none.key(0.8, 300)
    assert half.key(0.8, 3000) < half.key(0.8, 30)
