"""Router metrics on hand-built cases with known answers, the split, and reproducible training."""

from __future__ import annotations

import csv
import json
import random
from pathlib import Path

import numpy as np
import pytest

from tooling.routing.training.data import load_rows, split_rows, unseen
from tooling.routing.training.evaluate import heldout_rows
from tooling.routing.training.metrics import random_apgr, routing_curve
from tooling.routing.training.train import calibrate_threshold, train

WEAK = np.array([0, 0, 0, 0])
STRONG = np.array([1, 1, 0, 0])


def test_perfect_router() -> None:
    c = routing_curve(np.array([0.9, 0.8, 0.1, 0.2]), WEAK, STRONG)
    # PGR climbs 0 -> 1 over the first half, then stays 1: area 0.25 + 0.5.
    assert c.apgr == pytest.approx(0.75)
    assert c.cpt(0.5) == pytest.approx(0.25) and c.cpt(0.8) == pytest.approx(0.4)


def test_worst_router_and_ties() -> None:
    assert routing_curve(np.array([0.1, 0.2, 0.9, 0.8]), WEAK, STRONG).apgr == pytest.approx(0.25)
    # All scores tied: one step from all-weak to all-strong, the diagonal.
    tied = routing_curve(np.zeros(4), WEAK, STRONG)
    assert tied.apgr == pytest.approx(0.5) and tied.cpt(0.5) == pytest.approx(0.5)


def test_strong_wrong_rows_lower_quality() -> None:
    c = routing_curve(np.array([1.0, 0.5, 0.0]), np.array([1, 0, 0]), np.array([0, 1, 1]))
    assert c.quality.tolist() == pytest.approx([1 / 3, 0, 1 / 3, 2 / 3])  # the wrong one first hurts
    assert c.pgr.tolist() == pytest.approx([0, -1, 0, 1])
    with pytest.raises(ValueError):
        routing_curve(np.array([1.0]), np.array([1]), np.array([1]))  # strong == weak


def _routellm_apgr(scores: np.ndarray, weak: np.ndarray, strong: np.ndarray, bins: int) -> float:
    """RouteLLM's evals: thresholds at the score quantiles (pd.qcut bins), `>=` except `>` at the
    last one, accuracy at each, trapezoid over the strong share, normalised by weak/strong area."""
    cuts = np.unique(np.quantile(scores, np.linspace(0, 1, bins + 1)))
    pts = []
    for i, t in enumerate(cuts):
        sel = scores >= t if i != len(cuts) - 1 else scores > t
        pts.append((sel.mean(), np.where(sel, strong, weak).mean()))
    x, y = np.array(sorted(pts)).T
    auc = np.sum((y[1:] + y[:-1]) * np.diff(x)) / 2
    return float((auc - weak.mean()) / (strong.mean() - weak.mean()))


def test_apgr_agrees_with_routellm_quantile_sweep() -> None:
    # Continuous scores (no ties): our every-boundary sweep is RouteLLM's sweep with one bin per prompt,
    # and with 10 bins (its default) the coarser trapezoid stays close.
    rng = np.random.default_rng(3)
    n = 2000
    strong = (rng.random(n) < 0.8).astype(float)
    weak = (rng.random(n) < 0.6).astype(float)
    scores = (strong - weak) * 0.5 + rng.normal(size=n)
    ours = routing_curve(scores, weak, strong).apgr
    assert ours == pytest.approx(_routellm_apgr(scores, weak, strong, n), abs=1e-9)
    assert ours == pytest.approx(_routellm_apgr(scores, weak, strong, 10), abs=0.01)
    assert ours > 0.6  # and the check can fail: the reversed ranking is far below
    assert routing_curve(-scores, weak, strong).apgr < 0.4


def test_random_router_is_about_half() -> None:
    rng = np.random.default_rng(7)
    # A wide weak/strong gap keeps the random walk of the curve small (std ~0.01 per seed).
    weak, strong = rng.random(20_000) < 0.3, rng.random(20_000) < 0.9
    assert random_apgr(weak, strong) == pytest.approx(0.5, abs=0.02)


def test_calibrated_threshold_sends_the_share() -> None:
    scores = np.linspace(0, 1, 1001)
    t = calibrate_threshold(scores, 0.3)
    assert np.mean(scores >= t) == pytest.approx(0.3, abs=0.002)


def _write_dataset(root: Path) -> Path:
    """Tiny data in the shared layout: 8 subjects, GSM8K, a contaminated prompt."""
    rng = random.Random(3)
    header = ["prompt", "mistralai/Mixtral-8x7B-Instruct-v0.1", "gpt-4-1106-preview"]
    (root / "mmlu").mkdir(parents=True)
    (root / "gsm8k").mkdir()
    for s in range(8):
        with (root / "mmlu" / f"mmlu_subj{s}.csv").open("w", newline="") as fh:
            w = csv.writer(fh)
            w.writerow(header)
            for i in range(30):
                hard = rng.random() < 0.4
                stem = "Which statement is not true? " * (3 if hard else 1)
                w.writerow([f"{stem} item {s}-{i}\nA. 1\nB. 2\nC. 3\nD. 4\nAnswer:",
                            not hard or rng.random() < 0.3, rng.random() < 0.9])
    with (root / "gsm8k" / "gsm8k_responses.csv").open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(header + ["weak_response", "strong_response"])
        for i in range(40):
            w.writerow([f"Tom has {i} apples and buys {i * 3} more. How many in total?" * (1 + i % 3),
                        i % 3 == 0, True, "", ""])
    (root / "gsm8k" / "contaminated_prompts.jsonl").write_text(json.dumps(
        {"eval_prompt": "Tom has 0 apples and buys 0 more. How many in total?", "train_prompt": ""}) + "\n")
    return root


def test_split_holds_out_whole_subjects(tmp_path: Path) -> None:
    rows = load_rows(_write_dataset(tmp_path))
    assert len(rows) == 8 * 30 + 39  # the contaminated prompt is dropped
    split = split_rows(rows, 0.25, seed=0)
    train_groups = {r.group for r in split.train}
    test_subjects = {r.group for r in split.test if r.source == "mmlu"}
    assert len(test_subjects) == 2 and not test_subjects & train_groups
    assert 5 <= sum(r.source == "gsm8k" for r in split.test) <= 15
    assert split_rows(rows, 0.25, seed=0) == split
    seen = unseen(rows, train_groups - {"gsm8k"},
                  {r.digest for r in split.train if r.source == "gsm8k"})
    assert seen == split.test


def test_training_is_reproducible_and_eval_uses_unseen_rows(tmp_path: Path) -> None:
    data = _write_dataset(tmp_path)
    first, second = train(data, seed=0), train(data, seed=0)
    assert first.scorer.dumps() == second.scorer.dumps()
    assert first.threshold == second.threshold
    assert train(data, seed=1).scorer.meta["heldout_subjects"] != first.scorer.meta["heldout_subjects"] \
        or train(data, seed=2).scorer.meta["heldout_subjects"] != first.scorer.meta["heldout_subjects"]
    held = heldout_rows(data, first.scorer)
    assert {r.group for r in held if r.source == "mmlu"} == set(first.scorer.meta["heldout_subjects"])
