"""LearnedScorer: the committed artifact loads, scores are sane, bad artifacts are refused."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from app.routing.complexity_features import FEATURE_NAMES, extract
from app.routing.features import RequestFeatures
from app.routing.learned import ArtifactError, LearnedScorer
from tests.route_helpers import request
from tooling.routing.training.train import write_threshold

ARTIFACT = Path(__file__).resolve().parents[2] / "app" / "routing" / "artifacts" / "complexity.json"
MCQ = "Which gas do plants absorb?\nA. Oxygen\nB. Carbon dioxide\nC. Helium\nD. Neon\nAnswer:"


@pytest.fixture(scope="module")
def scorer() -> LearnedScorer:
    return LearnedScorer.load(ARTIFACT)


def test_artifact_is_small_json_with_provenance(scorer: LearnedScorer) -> None:
    assert ARTIFACT.stat().st_size < 64_000
    assert scorer.meta["seed"] == 0 and scorer.meta["heldout_subjects"]
    assert not set(scorer.meta["heldout_subjects"]) & set(scorer.meta["train_subjects"])


@pytest.mark.parametrize("text", ["", "hi", MCQ, "é∑ 12+3=15 ?" * 500, "x" * 20_000])
def test_scores_are_probabilities(scorer: LearnedScorer, text: str) -> None:
    p = scorer.score(RequestFeatures.of(request(text)))
    assert 0.0 <= p <= 1.0 and math.isfinite(p)
    assert len(extract(text)) == len(FEATURE_NAMES)


def test_score_is_the_logistic_of_the_contributions(scorer: LearnedScorer) -> None:
    z = scorer.bias + sum(scorer.contributions(MCQ).values())
    assert scorer.score_text(MCQ) == pytest.approx(1 / (1 + math.exp(-z)))


def test_multiple_choice_structure_is_seen() -> None:
    f = dict(zip(FEATURE_NAMES, extract(MCQ), strict=True))
    assert f["has_options"] == 1.0 and f["log_option_chars"] > 0
    assert dict(zip(FEATURE_NAMES, extract("What is 2+2?"), strict=True))["has_options"] == 0.0


def test_round_trip_is_identical(scorer: LearnedScorer) -> None:
    again = LearnedScorer.from_dict(json.loads(scorer.dumps()))
    assert again == scorer and again.dumps() == scorer.dumps()


def test_refuses_artifact_for_other_features(scorer: LearnedScorer, tmp_path: Path) -> None:
    data = scorer.to_dict() | {"features": ["only_length"], "weights": [1.0]}
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(data))
    with pytest.raises(ArtifactError):
        LearnedScorer.load(path)
    with pytest.raises(ArtifactError):
        LearnedScorer.load(tmp_path / "missing.json")


def test_write_threshold_edits_only_that_key(tmp_path: Path) -> None:
    path = tmp_path / "routing.yaml"
    path.write_text("# keep me\nthreshold: 0.5  # calibrated\nrules:\n  - {threshold: 9}\n")
    write_threshold(path, 0.2017751)
    assert path.read_text() == "# keep me\nthreshold: 0.201775  # calibrated\nrules:\n  - {threshold: 9}\n"
