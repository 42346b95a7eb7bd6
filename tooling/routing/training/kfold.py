"""`tierserve route-eval --kfold K`: both scorer recipes, cross-validated by subject.

Each fold holds out whole MMLU subjects and a slice of GSM8K rows; each recipe is
retrained from scratch on the rest (L2 chosen on validation subjects inside the fold's
training part, exactly as `route-train` does), then scored on the held-out fold.
Reported: APGR and CPT(50%) pooled, and APGR per benchmark, mean over folds.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from tooling.routing.training import train as hand
from tooling.routing.training import train_embed
from tooling.routing.training.data import GSM8K, Row, kfold_by_subject, load_rows, split_rows
from tooling.routing.training.metrics import random_apgr, routing_curve

RECIPES = ("hand-features", "embedding", "embedding-gain")


def _hand_recipe(train_rows: list[Row], seed: int, x_all: np.ndarray, index: dict) -> np.ndarray:
    """The shipped recipe (train.py): returns weights+bias applied to standardised features."""
    inner = split_rows(train_rows, hand.HELDOUT_SHARE, seed + 1)
    rows_x = lambda rows: x_all[[index[(r.group, r.digest)] for r in rows]]  # noqa: E731
    y = lambda rows: np.array([r.needs_strong for r in rows], dtype=float)  # noqa: E731
    best, best_apgr = hand.L2_GRID[0], -1.0
    for l2 in hand.L2_GRID:
        mean, scale = hand.standardise(rows_x(inner.train))
        w, b = hand.fit_logistic((rows_x(inner.train) - mean) / scale, y(inner.train), l2)
        sc = ((rows_x(inner.test) - mean) / scale) @ w + b
        apgr = round(routing_curve(sc, np.array([r.weak_ok for r in inner.test]),
                                   np.array([r.strong_ok for r in inner.test])).apgr, 6)
        if (apgr, l2) > (best_apgr, best):
            best, best_apgr = l2, apgr
    mean, scale = hand.standardise(rows_x(train_rows))
    w, b = hand.fit_logistic((rows_x(train_rows) - mean) / scale, y(train_rows), best)
    return ((x_all - mean) / scale) @ w + b


@dataclass(frozen=True)
class FoldScores:
    apgr: float
    cpt50: float
    per_source: dict[str, float]


def _measure(scores: np.ndarray, rows: list[Row]) -> FoldScores:
    weak = np.array([r.weak_ok for r in rows])
    strong = np.array([r.strong_ok for r in rows])
    curve = routing_curve(scores, weak, strong)
    per = {}
    for source in ("mmlu", GSM8K):
        mask = np.array([r.source == source for r in rows])
        if mask.any():
            per[source] = routing_curve(scores[mask], weak[mask], strong[mask]).apgr
    return FoldScores(curve.apgr, curve.cpt(0.5), per)


def _random(rows: list[Row]) -> FoldScores:
    weak = np.array([r.weak_ok for r in rows])
    strong = np.array([r.strong_ok for r in rows])
    per = {s: random_apgr(weak[m], strong[m]) for s in ("mmlu", GSM8K)
           if (m := np.array([r.source == s for r in rows])).any()}
    # CPT(50%) of a random router is 50% in expectation.
    return FoldScores(random_apgr(weak, strong), 0.5, per)


def kfold(data_dir: Path, k: int = 5, seed: int = 0) -> dict[str, list[FoldScores]]:
    rows = load_rows(data_dir)
    index = {(r.group, r.digest): i for i, r in enumerate(rows)}
    x_hand = hand.feature_matrix(rows)
    cache = train_embed.FeatureCache(train_embed.matrices(rows), index)
    out: dict[str, list[FoldScores]] = {name: [] for name in (*RECIPES, "random")}
    for fold in kfold_by_subject(rows, k, seed):
        test_idx = np.array([index[(r.group, r.digest)] for r in fold.test])
        out["hand-features"].append(_measure(_hand_recipe(fold.train, seed, x_hand, index)[test_idx],
                                             fold.test))
        scorer, _ = train_embed.fit_recipe(fold.train, seed, cache=cache, objective="gain")
        test_m = cache.all.take(test_idx)
        # The gain scorer's needs-strong heads are the plain embedding recipe, fitted once.
        out["embedding"].append(_measure(train_embed.logits(scorer, test_m), fold.test))
        out["embedding-gain"].append(_measure(train_embed.scores(scorer, test_m), fold.test))
        out["random"].append(_random(fold.test))
    return out


def summary(results: dict[str, list[FoldScores]]) -> dict[str, dict[str, float]]:
    table = {}
    for name, folds in results.items():
        row = {"apgr": float(np.mean([f.apgr for f in folds])),
               "apgr_sd": float(np.std([f.apgr for f in folds])),
               "cpt50": float(np.mean([f.cpt50 for f in folds]))}
        for source in ("mmlu", GSM8K):
            row[f"apgr_{source}"] = float(np.mean([f.per_source[source] for f in folds]))
        table[name] = {k: round(v, 4) for k, v in row.items()}
    return table


def out_of_fold_scores(rows: list[Row], k: int = 5, seed: int = 0,
                       objective: train_embed.Objective = "gain") -> np.ndarray:
    """The embedding recipe's score of every row from a model that never saw its subject (or
    GSM8K row): k folds by subject over `rows`, the recipe refit on the rest each time. For
    choosing routing knobs on training prompts with the spread unseen prompts would have."""
    index = {(r.group, r.digest): i for i, r in enumerate(rows)}
    cache = train_embed.FeatureCache(train_embed.matrices(rows), index)
    by_key: dict[tuple[str, str], float] = {}
    for fold in kfold_by_subject(rows, k, seed):
        test_idx = np.array([index[(r.group, r.digest)] for r in fold.test])
        scorer, _ = train_embed.fit_recipe(fold.train, seed, cache=cache, objective=objective)
        got = train_embed.scores(scorer, cache.all.take(test_idx))
        by_key.update({(r.group, r.digest): float(s) for r, s in zip(fold.test, got, strict=True)})
    # A prompt repeated within a subject is one key: every copy gets its score.
    return np.array([by_key[(r.group, r.digest)] for r in rows])
