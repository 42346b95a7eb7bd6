"""Target shares -> ladder thresholds (route-train's calibration), through the whole pipeline."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from app.config.loader import load_config
from tests.route_helpers import FixedScorer
from tests.unit.test_route_plugins import three_tier_config
from tooling.routing.training.calibrate import (
    calibrate,
    route_all,
    shares_of,
    with_thresholds,
    write_thresholds,
)
from tooling.routing.training.data import DEFAULT_DATA_DIR, load_rows
from tooling.routing.training.tiering import with_picker


@pytest.fixture(scope="module")
def reference() -> tuple[list[str], list[str]]:
    """Two disjoint seeded samples of router-eval prompts (MMLU and GSM8K)."""
    if not DEFAULT_DATA_DIR.is_dir():
        pytest.skip(f"{DEFAULT_DATA_DIR} not present")
    prompts = [r.prompt for r in load_rows(DEFAULT_DATA_DIR)]
    sample = random.Random(7).sample(prompts, 3000)
    return sample[:1500], sample[1500:]


@pytest.mark.parametrize("targets", [[60, 30, 10], [34, 33, 33], [80, 15, 5]])
def test_calibrated_shares_are_within_two_points_of_target(reference, targets: list[int]) -> None:
    config = load_config("local-cpu-3tier")
    fit, other = reference
    cal = calibrate(config, fit, [float(t) for t in targets])
    assert cal.thresholds == sorted(cal.thresholds) and len(cal.thresholds) == 2
    for tier, target in zip(config.routing.ladder, targets, strict=True):
        assert abs(cal.achieved[tier] - target / 100) <= 0.02, (tier, cal.achieved)
    # The thresholds carry over to unseen prompts of the same kind (looser: sampling error).
    tuned = with_thresholds(config, cal.thresholds)
    unseen = shares_of(tuned, route_all(tuned, other))
    for tier, target in zip(config.routing.ladder, targets, strict=True):
        assert abs(unseen[tier] - target / 100) <= 0.04, (tier, unseen)


def test_two_tier_calibration_matches_the_reasoning_share(reference) -> None:
    config = with_picker(load_config("local-cpu"), "ladder")  # shares are the plain ladder's policy
    cal = calibrate(config, reference[0], [0.7, 0.3])
    assert abs(cal.achieved["reasoning"] - 0.3) <= 0.02 and len(cal.thresholds) == 1


class Ramp(FixedScorer):
    """Score = the number that ends the prompt / 100."""

    def score(self, features) -> float:
        return int(features.text.split()[-1]) / 100


def test_pinned_prompts_count_toward_their_tier() -> None:
    """A rule that sends 5% to reasoning leaves the score 5% more to send there."""
    rules = [{"name": "proof", "tier": "reasoning", "match": {"patterns": [r"\bprove\b"]}}]
    config = three_tier_config(rules=rules)
    prompts = [f"prove claim {i}" for i in range(5)] + [f"question {i}" for i in range(95)]
    cal = calibrate(config, prompts, [60, 30, 10], scorer=Ramp(0))
    assert cal.pinned_share == 0.05
    assert cal.achieved == pytest.approx({"fast": 0.6, "medium": 0.3, "reasoning": 0.1}, abs=0.02)
    # Rules that overshoot a tier's share: the other tiers keep their ratio.
    prompts = [f"prove claim {i}" for i in range(20)] + [f"question {i}" for i in range(80)]
    cal = calibrate(config, prompts, [60, 30, 10], scorer=Ramp(0))
    assert cal.achieved == pytest.approx({"fast": 0.53, "medium": 0.27, "reasoning": 0.2}, abs=0.01)


def test_write_thresholds_keeps_comments(tmp_path: Path) -> None:
    path = tmp_path / "p.yaml"
    path.write_text("routing:\n  # policy\n  thresholds: [0.1, 0.2]  # calibrated\n")
    write_thresholds(path, [0.25, 0.5])
    assert path.read_text() == "routing:\n  # policy\n  thresholds: [0.25, 0.5]  # calibrated\n"
    two = tmp_path / "routing.yaml"
    two.write_text("# shared\nthreshold: 0.2018\n")
    write_thresholds(two, [0.3])
    assert two.read_text() == "# shared\nthreshold: 0.3\n"
