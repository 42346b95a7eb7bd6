"""The embedding scorer's gain objective (route-train --objective gain): hurt heads for "only the
weak model was right", score = (1 + P(only strong right) - P(only weak right)) / 2."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from app.routing.learned_embed import BoundEmbeddingScorer, EmbeddingScorer
from app.routing.scorer import load_scorer
from tooling.routing.training import train_embed

ARTIFACT = Path(__file__).resolve().parents[2] / "app/routing/artifacts/complexity_embed_gain.json"
PROMPTS = ["Which gas do plants absorb?\nA. Oxygen\nB. Carbon dioxide\nC. Helium\nD. Neon\nAnswer:",
           "Tom has 3 apples and buys 4 more. How many?", "Statement 1 | x\nA. a\nB. b\nC. c\nD. d", ""]


@pytest.fixture(scope="module")
def scorer() -> BoundEmbeddingScorer:
    s = load_scorer(ARTIFACT)
    assert isinstance(s, BoundEmbeddingScorer) and s.model.hurt is not None
    return s


def test_score_is_the_expected_gain_of_going_up(scorer: BoundEmbeddingScorer) -> None:
    sig = lambda z: 1 / (1 + math.exp(-z))  # noqa: E731
    hurt = BoundEmbeddingScorer(EmbeddingScorer(*scorer.model.hurt, scorer.model.embedding),  # type: ignore[misc]
                                scorer._emb)
    for text in PROMPTS:
        p = scorer.score_text(text)
        assert 0 <= p <= 1
        assert p == pytest.approx((1 + sig(scorer.logit(text)) - sig(hurt.logit(text))) / 2, abs=1e-12)


def test_vectorised_scores_match_the_serving_path(scorer: BoundEmbeddingScorer) -> None:
    rows = [type("R", (), {"prompt": p, "weak_ok": True, "strong_ok": True})() for p in PROMPTS]
    got = train_embed.scores(scorer.model, train_embed.matrices(rows))  # type: ignore[arg-type]
    assert np.allclose(got, [scorer.score_text(p) for p in PROMPTS], atol=1e-9)


def test_gain_artifact_round_trips_and_the_plain_one_has_no_hurt_heads(scorer) -> None:
    again = EmbeddingScorer.from_dict(json.loads(scorer.dumps()))
    assert again == scorer.model and again.dumps() == scorer.dumps()
    assert scorer.meta["objective"] == "gain" and ARTIFACT.stat().st_size < 64_000
    plain = load_scorer(ARTIFACT.with_name("complexity_embed.json"))
    assert isinstance(plain, BoundEmbeddingScorer) and plain.model.hurt is None
    # Its needs-strong heads are the plain recipe's: the same seed and data give the same heads.
    assert (plain.model.options, plain.model.free) == (scorer.model.options, scorer.model.free)


def test_retraining_keeps_the_objective_of_the_scorer_the_profile_runs():
    # `route-train` (and `--from-feedback`) without --objective makes the kind of scorer that
    # is live: the gain one on local-cpu, the plain label for a profile pinned to the hand scorer.
    from tooling.routing.cli import _configured_objective

    assert _configured_objective("local-cpu") == "gain"
    assert _configured_objective("local-cpu-3tier") == "needs-strong"
