"""Offline tiering (`tierserve route-eval --tiering`): priced cost and accuracy of a two-tier
policy relative to all-strong, on hand-built prompts with known answers."""

from __future__ import annotations

import numpy as np
import pytest

from app.routing.features import estimate_tokens
from tests.route_helpers import FixedScorer, two_tier_config
from tooling.routing.training import tiering
from tooling.routing.training.data import Row


def _config(**routing):
    config = two_tier_config(**routing)
    tiers = [config.tiers[0].model_copy(update={"cost_per_1k_tokens": 0.1, "max_model_len": 600}),
             config.tiers[1].model_copy(update={"cost_per_1k_tokens": 1.0})]
    return config.model_copy(update={"tiers": tiers})


def _row(prompt: str, weak: bool, strong: bool) -> Row:
    return Row("mmlu", "s", prompt, weak, strong)


def _priced(weak, strong, weak_price, strong_price) -> tiering.Priced:
    rows = [_row(f"p{i}", bool(w), bool(s)) for i, (w, s) in enumerate(zip(weak, strong, strict=True))]
    return tiering.Priced(rows,
                          np.array(weak, dtype=bool), np.array(strong, dtype=bool),
                          np.array(weak_price, dtype=float), np.array(strong_price, dtype=float))


def test_outcome_is_relative_to_all_strong() -> None:
    p = _priced([1, 0, 0, 1], [1, 1, 1, 0], [1, 1, 2, 4], [10, 10, 20, 40])
    o = tiering.outcome(p, np.array([False, False, True, True]))
    assert o.to_strong == 0.5
    assert o.rel_accuracy == pytest.approx((2 / 4) / (3 / 4))  # rows 0 and 2 right; all-strong: 3
    assert o.rel_cost == pytest.approx((1 + 1 + 20 + 40) / 80)
    everything = tiering.outcome(p, np.ones(4, dtype=bool))
    assert (everything.rel_accuracy, everything.rel_cost, everything.to_strong) == (1.0, 1.0, 1.0)


def test_priced_drops_what_does_not_fit_the_weak_tier_and_prices_each_tier() -> None:
    config = _config()  # model_source "m" is not local: the router's estimate counts tokens
    short, long = "word " * 40, "word " * 600  # ~50 and ~750 estimated tokens; budget 600 - 256
    p = tiering.priced(config, [_row(short, True, True), _row(long, False, True)])
    assert [r.prompt for r in p.rows] == [short]
    tokens = estimate_tokens(short) + tiering.ANSWER_TOKENS
    assert p.weak_price.tolist() == pytest.approx([tokens * 0.1 / 1000])
    assert p.strong_price.tolist() == pytest.approx([tokens * 1.0 / 1000])


class ByLength(FixedScorer):
    def score(self, features) -> float:
        return min(1.0, len(features.text) / 400)


def test_route_keeps_rules_and_compares_the_picker_key() -> None:
    config = _config(threshold=0.5, rules=[{"name": "proof", "tier": "reasoning",
                                            "match": {"patterns": [r"\bprove\b"]}}])
    prompts = ["prove it " * 5, "a " * 50, "b " * 150]
    routed = tiering.route(config, prompts, ByLength(0))
    assert routed.scored.tolist() == [False, True, True] and routed.fixed_up.tolist() == [True, False, False]
    assert routed.key[1:].tolist() == pytest.approx([100 / 400, 300 / 400])
    assert routed.up(0.5).tolist() == [True, False, True]
    assert routed.up(0.9).tolist() == [True, False, False]  # the rule holds at any threshold
    # Given scores (e.g. out-of-fold) replace the scorer's for the scored prompts only.
    given = tiering.route(config, prompts, ByLength(0), scores=np.array([0.0, 0.9, 0.1]))
    assert given.key[1:].tolist() == pytest.approx([0.9, 0.1]) and given.fixed_up[0]
    # The cost-ladder key: the same scores weighed by E / (tokens + E).
    cost = tiering.route(tiering.with_cost_ladder(config, 100, 1.0), prompts, ByLength(0))
    assert cost.key[2] == pytest.approx(0.75 * 100 / (estimate_tokens(prompts[2]) + 100))


def test_route_refuses_a_ladder_of_three() -> None:
    config = two_tier_config()
    three = config.tiers + [config.tiers[1].model_copy(update={"name": "medium"})]
    routing = config.routing.model_copy(update={"ladder": ["fast", "medium", "reasoning"],
                                                "thresholds": [0.3, 0.6]})
    with pytest.raises(ValueError, match="two tiers"):
        tiering.route(config.model_copy(update={"tiers": three, "routing": routing}), ["x"])


def _routed(scored: np.ndarray, fixed_up: np.ndarray, key: np.ndarray) -> tiering.Routed:
    """Sweeps and frontiers read only the keys; where the pipeline sent each one is not needed."""
    return tiering.Routed(scored, fixed_up, key, went_up=fixed_up, used=np.full(len(key), np.nan))


def test_sweep_and_frontier_rise_with_the_share_and_cheapest_keeps_the_accuracy() -> None:
    rng = np.random.default_rng(0)
    n = 200
    strong = rng.random(n) < 0.9
    weak = strong & (rng.random(n) < 0.7)
    p = _priced(weak, strong, rng.uniform(1, 5, n), rng.uniform(10, 50, n))
    # A score that knows which prompts need the strong tier, plus noise.
    key = np.where(strong & ~weak, 0.7, 0.3) + rng.normal(0, 0.1, n)
    routed = _routed(np.ones(n, dtype=bool), np.zeros(n, dtype=bool), key)
    sweep = tiering.sweep(p, routed, (0.1, 0.3, 0.5))
    assert [round(o.to_strong, 2) for o in sweep] == [0.1, 0.3, 0.5]
    assert sweep[0].rel_cost < sweep[1].rel_cost < sweep[2].rel_cost
    points = tiering.frontier(p, routed)
    assert [o.to_strong for o in points] == sorted(o.to_strong for o in points)
    best = tiering.cheapest_at(points, 0.95)
    assert best is not None and best.rel_accuracy >= 0.95
    assert all(o.rel_cost >= best.rel_cost for o in points if o.rel_accuracy >= 0.95)
    assert tiering.cheapest_at(points, 1.01) is None


def test_sweep_counts_what_the_rules_already_send_up() -> None:
    p = _priced([0] * 10, [1] * 10, [1] * 10, [10] * 10)
    fixed = np.array([True, True] + [False] * 8)
    routed = _routed(~fixed, fixed, np.linspace(1, 0, 10))
    low, mid = tiering.sweep(p, routed, (0.1, 0.5))
    assert low.to_strong == 0.2  # the two rule-pinned prompts alone: no scored one goes up
    assert mid.to_strong == 0.5


def test_out_of_fold_scores_cover_every_row_reproducibly(tmp_path) -> None:
    from tests.unit.test_route_eval import _write_dataset
    from tooling.routing.training.data import load_rows
    from tooling.routing.training.kfold import out_of_fold_scores

    rows = load_rows(_write_dataset(tmp_path))
    rows = rows + rows[:3]  # a repeated prompt is one key: every copy gets its score
    first = out_of_fold_scores(rows, 3, seed=0)
    assert first.shape == (len(rows),) and np.isfinite(first).all()
    assert ((first >= 0) & (first <= 1)).all() and first[-3:].tolist() == first[:3].tolist()
    assert out_of_fold_scores(rows, 3, seed=0).tolist() == first.tolist()
    assert out_of_fold_scores(rows, 3, seed=1).tolist() != first.tolist()  # other folds, other models


def test_route_eval_tiering_prints_the_configured_point_and_a_sweep(tmp_path, capsys) -> None:
    import json

    from tests.unit.test_route_eval import _write_dataset
    from tooling.cli import main

    data = _write_dataset(tmp_path)  # subjects the shipped scorer never saw: all held out
    assert main(["route-eval", "--tiering", "--json", "--data", str(data), "--threshold", "0.0"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["n"] > 200 and out["picker"].startswith("cost-budget(")
    # Threshold 0: every prompt the score decides goes up, and all-strong is the reference.
    assert out["configured"]["to_strong"] > 0.9 and out["configured"]["rel_cost"] > 0.9
    shares = [o["to_strong"] for o in out["sweep"]]
    assert shares == sorted(shares) and len(shares) == 19
    assert main(["route-eval", "--tiering", "--json", "--data", str(data),
                 "--cost-ladder", "64", "1"]) == 0
    assert json.loads(capsys.readouterr().out)["picker"].startswith("cost-ladder(completion_tokens=64")
