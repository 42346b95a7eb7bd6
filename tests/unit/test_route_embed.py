"""Scorer v2: the static embedding, its features, the artifact, the k-fold split, reproducibility."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from app.routing.embed_features import EXTRA_NAMES, extract
from app.routing.embedding import DIM, shared_embedder
from app.routing.learned import ArtifactError, LearnedScorer
from app.routing.learned_embed import BoundEmbeddingScorer, EmbeddingScorer
from app.routing.scorer import load_scorer
from tests.unit.test_route_eval import _write_dataset
from tooling.routing.training import train_embed
from tooling.routing.training.data import kfold_by_subject, load_rows

ARTIFACTS = Path(__file__).resolve().parents[2] / "app" / "routing" / "artifacts"
MCQ = "Which gas do plants absorb?\nA. Oxygen\nB. Carbon dioxide\nC. Helium\nD. Neon\nAnswer:"


@pytest.fixture(scope="module")
def emb():
    return shared_embedder()


@pytest.fixture(scope="module")
def scorer() -> BoundEmbeddingScorer:
    s = load_scorer(ARTIFACTS / "complexity_embed.json")
    assert isinstance(s, BoundEmbeddingScorer)
    return s


def test_cached_word_ids_are_the_tokenizers(emb) -> None:
    text = "Tom's 3 cats, each 12.5kg: total? Photosynthesis  uses\nlight."
    expected = [i for w in text.split() for i in emb._tok.encode(w, add_special_tokens=False).ids]
    assert emb.token_ids(text) == expected
    assert emb.token_ids(text) == expected  # second time from the cache


def test_mean_embedding_is_the_mean_of_table_rows(emb) -> None:
    ids = emb.token_ids("the the cat sat")
    assert np.allclose(emb.mean_embedding("the the cat sat"), emb._table[ids].mean(axis=0), atol=1e-6)
    assert emb.mean_embedding("").shape == (DIM,) and not emb.mean_embedding("   ").any()


def test_option_features_only_for_an_option_block(emb) -> None:
    mcq, free = extract(MCQ, emb), extract("Tom has 3 apples. How many?", emb)
    assert mcq.has_options and not free.has_options
    named = dict(zip(EXTRA_NAMES, mcq.extra, strict=True))
    assert -1 <= named["option_cos_min"] <= named["option_cos_max"] <= 1
    assert dict(zip(EXTRA_NAMES, free.extra, strict=True))["option_cos_mean"] == 0.0


@pytest.mark.parametrize("text", ["", "hi", MCQ, "é∑ 12+3=15 ?" * 500, "x" * 20_000])
def test_scores_are_probabilities(scorer: BoundEmbeddingScorer, text: str) -> None:
    p = scorer.score_text(text)
    assert 0.0 <= p <= 1.0 and math.isfinite(p)


def test_vectorised_training_logits_match_the_serving_path(scorer: BoundEmbeddingScorer) -> None:
    prompts = [MCQ, "Tom has 3 apples and buys 4 more. How many?", "Statement 1 | x\nA. a\nB. b\nC. c\nD. d"]
    rows = [type("R", (), {"prompt": p, "weak_ok": True, "strong_ok": True})() for p in prompts]
    z = train_embed.logits(scorer.model, train_embed.matrices(rows))  # type: ignore[arg-type]
    assert np.allclose(z, [scorer.logit(p) for p in prompts], atol=1e-6)


def test_artifact_is_small_and_round_trips(scorer: BoundEmbeddingScorer) -> None:
    assert (ARTIFACTS / "complexity_embed.json").stat().st_size < 64_000
    again = EmbeddingScorer.from_dict(json.loads(scorer.dumps()))
    assert again == scorer.model and again.dumps() == scorer.dumps()
    assert not set(scorer.meta["heldout_subjects"]) & set(scorer.meta["train_subjects"])


def test_refuses_another_embedding_table(scorer: BoundEmbeddingScorer) -> None:
    data = json.loads(scorer.dumps())
    data["embedding"]["fingerprint"] = "0" * 16
    with pytest.raises(ArtifactError, match="embedding table"):
        EmbeddingScorer.from_dict(data).bind()


def test_load_scorer_picks_the_class_from_the_artifact() -> None:
    assert isinstance(load_scorer(ARTIFACTS / "complexity.json"), LearnedScorer)
    assert isinstance(load_scorer(ARTIFACTS / "complexity_embed.json"), BoundEmbeddingScorer)


def test_kfold_holds_out_whole_subjects_each_once(tmp_path: Path) -> None:
    rows = load_rows(_write_dataset(tmp_path))
    folds = kfold_by_subject(rows, 4, seed=0)
    tested_subjects: list[str] = []
    tested_gsm: list[str] = []
    for fold in folds:
        train_groups = {r.group for r in fold.train if r.source == "mmlu"}
        test_groups = {r.group for r in fold.test if r.source == "mmlu"}
        assert test_groups and not test_groups & train_groups
        assert not {r.digest for r in fold.test} & {r.digest for r in fold.train}
        assert len(fold.train) + len(fold.test) == len(rows)
        tested_subjects += sorted(test_groups)
        tested_gsm += [r.digest for r in fold.test if r.source == "gsm8k"]
    assert sorted(tested_subjects) == sorted({r.group for r in rows if r.source == "mmlu"})
    assert sorted(tested_gsm) == sorted(r.digest for r in rows if r.source == "gsm8k")
    assert kfold_by_subject(rows, 4, seed=0) == folds
    with pytest.raises(ValueError):
        kfold_by_subject(rows, 1, seed=0)


def test_training_is_byte_identical(tmp_path: Path) -> None:
    data = _write_dataset(tmp_path)
    first, second = train_embed.train(data, seed=0), train_embed.train(data, seed=0)
    assert first.scorer.dumps() == second.scorer.dumps() and first.threshold == second.threshold
    assert first.scorer.options.embed_weights and not first.scorer.free.embed_weights
