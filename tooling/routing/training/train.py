"""`tierserve route-train`: fit the complexity scorer, calibrate the threshold, write the artifact.

Logistic regression (Newton's method, L2) on `complexity_features`; the L2
strength is chosen on validation subjects carved out of the training subjects,
then the model is refit on all training rows. Held-out subjects and GSM8K rows
are never touched. Same data and seed give byte-identical artifacts.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from app.routing.complexity_features import FEATURE_NAMES, extract
from app.routing.learned import LearnedScorer
from tooling.routing.training.data import GSM8K, Row, load_rows, split_rows
from tooling.routing.training.metrics import routing_curve

L2_GRID = (0.001, 0.01, 0.1, 1.0)
HELDOUT_SHARE = 0.25


def feature_matrix(rows: list[Row]) -> np.ndarray:
    return np.array([extract(r.prompt) for r in rows], dtype=float).reshape(len(rows), len(FEATURE_NAMES))


def fit_logistic(x: np.ndarray, y: np.ndarray, l2: float, iters: int = 50) -> tuple[np.ndarray, float]:
    """Newton's method on the mean log-loss + l2/2·|w|² (bias not penalised); deterministic."""
    n, d = x.shape
    xb = np.hstack([x, np.ones((n, 1))])
    beta = np.zeros(d + 1)
    penalty = np.diag([l2] * d + [0.0])
    for _ in range(iters):
        p = 1.0 / (1.0 + np.exp(-(xb @ beta)))
        grad = xb.T @ (p - y) / n + penalty @ beta
        hess = (xb.T * (p * (1 - p))) @ xb / n + penalty + 1e-9 * np.eye(d + 1)
        step = np.linalg.solve(hess, grad)
        beta -= step
        if np.max(np.abs(step)) < 1e-10:
            break
    return beta[:d], float(beta[d])


def standardise(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    scale = x.std(axis=0)
    return x.mean(axis=0), np.where(scale > 1e-12, scale, 1.0)


def _fit_scorer(x: np.ndarray, y: np.ndarray, l2: float, meta: dict) -> LearnedScorer:
    mean, scale = standardise(x)
    w, b = fit_logistic((x - mean) / scale, y, l2)
    def r(v: np.ndarray) -> tuple[float, ...]:  # short, stable JSON
        return tuple(round(float(t), 8) for t in v)

    return LearnedScorer(FEATURE_NAMES, r(mean), r(scale), r(w), round(b, 8), meta)


def _scores(scorer: LearnedScorer, x: np.ndarray) -> np.ndarray:
    w, m, s = (np.array(v) for v in (scorer.weights, scorer.mean, scorer.scale))
    return ((x - m) / s) @ w + scorer.bias  # the logit ranks as the probability does


def calibrate_threshold(scores: np.ndarray, strong_share: float) -> float:
    """RouteLLM's calibrate_threshold: the score quantile that sends `strong_share` to strong."""
    return float(np.percentile(scores, 100 * (1 - strong_share)))


@dataclass(frozen=True)
class TrainResult:
    scorer: LearnedScorer
    threshold: float


def train(data_dir: Path, seed: int = 0, strong_share: float = 0.3) -> TrainResult:
    rows = load_rows(data_dir)
    split = split_rows(rows, HELDOUT_SHARE, seed)
    # Validation: the same kind of split again, inside the training part.
    inner = split_rows(split.train, HELDOUT_SHARE, seed + 1)
    x_fit, x_val = feature_matrix(inner.train), feature_matrix(inner.test)
    y_fit = np.array([r.needs_strong for r in inner.train], dtype=float)
    val_apgr = {}
    for l2 in L2_GRID:
        s = _fit_scorer(x_fit, y_fit, l2, {})
        val_apgr[l2] = routing_curve(_scores(s, x_val), np.array([r.weak_ok for r in inner.test]),
                                     np.array([r.strong_ok for r in inner.test])).apgr
    best = max(L2_GRID, key=lambda l2: (round(val_apgr[l2], 6), l2))

    x = feature_matrix(split.train)
    y = np.array([r.needs_strong for r in split.train], dtype=float)
    meta = {
        "seed": seed, "heldout_share": HELDOUT_SHARE, "l2": best, "label": "weak wrong and strong right",
        "validation_apgr": {str(k): round(v, 4) for k, v in val_apgr.items()},
        "n_train": len(split.train),
        "train_subjects": sorted({r.group for r in split.train if r.source != GSM8K}),
        "heldout_subjects": sorted({r.group for r in split.test if r.source != GSM8K}),
        # GSM8K is split by row: the digests say which rows were seen, for route-eval.
        "gsm8k_train_digests": sorted(r.digest for r in split.train if r.source == GSM8K),
    }
    scorer = _fit_scorer(x, y, best, meta)
    probs = np.array([scorer.score_text(r.prompt) for r in split.train])
    return TrainResult(scorer, round(calibrate_threshold(probs, strong_share), 6))


_THRESHOLD = re.compile(r"^(threshold:[ \t]*)([^\s#]+)", re.M)


def write_threshold(config_path: Path, threshold: float) -> None:
    """Replace the value of the top-level `threshold:` key only, keeping comments and layout."""
    text = config_path.read_text()
    new, count = _THRESHOLD.subn(lambda m: f"{m.group(1)}{threshold:.6g}", text, count=1)
    if count != 1:
        raise ValueError(f"{config_path}: no top-level `threshold:` key to update")
    config_path.write_text(new)
