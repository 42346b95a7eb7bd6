"""`tierserve route-train --scorer embedding`: fit the embedding scorer (v2).

Same split, label and calibration as the hand-feature scorer (train.py). The
multiple-choice head reads the hand features, the embedding extras and the top
`PCA_DIMS` principal components of the mean token vector; the free-form head (GSM8K
style) reads the dense features only: on ~800 free-form rows the vector overfits.
Each head's L2 is chosen on validation subjects inside the training part; then both
heads are refit on all training rows and the PCA is folded into one weight vector.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import Literal

import numpy as np

from app.routing import complexity_features, embed_features
from app.routing.embedding import PACKAGE, WEIGHTS, StaticEmbedder, shared_embedder
from app.routing.learned_embed import DENSE_NAMES, EmbeddingScorer, Head
from tooling.routing.training.data import GSM8K, Row, load_rows, split_rows
from tooling.routing.training.metrics import routing_curve
from tooling.routing.training.train import HELDOUT_SHARE, calibrate_threshold, fit_logistic, standardise

PCA_DIMS = 16
L2_OPTIONS = (0.003, 0.01, 0.03)
L2_FREE = (0.3, 1.0, 3.0)


@dataclass(frozen=True)
class Matrices:
    """Everything training needs from a list of rows, computed once."""

    dense: np.ndarray  # (n, len(DENSE_NAMES))
    emb: np.ndarray  # (n, 256) mean token vectors
    options: np.ndarray  # (n,) bool: multiple-choice head
    weak: np.ndarray
    strong: np.ndarray

    @property
    def label(self) -> np.ndarray:
        return (self.strong & ~self.weak).astype(float)

    def take(self, idx: np.ndarray) -> Matrices:
        return Matrices(self.dense[idx], self.emb[idx], self.options[idx], self.weak[idx],
                        self.strong[idx])

    def __add__(self, other: Matrices) -> Matrices:
        return Matrices(*(np.concatenate([a, b]) for a, b in (
            (self.dense, other.dense), (self.emb, other.emb), (self.options, other.options),
            (self.weak, other.weak), (self.strong, other.strong))))

    def __len__(self) -> int:
        return len(self.dense)

    def swapped(self) -> Matrices:
        """Weak and strong swapped: the label becomes "only the weak model was right"."""
        return Matrices(self.dense, self.emb, self.options, self.strong, self.weak)


@dataclass(frozen=True)
class FeatureCache:
    """Matrices of every row, computed once (k-fold), and each row's place in them."""

    all: Matrices
    index: dict[tuple[str, str], int]

    def rows(self, rows: list[Row]) -> Matrices:
        return self.all.take(np.array([self.index[(r.group, r.digest)] for r in rows], dtype=int))


Objective = Literal["needs-strong", "gain"]
OBJECTIVES: tuple[Objective, ...] = ("needs-strong", "gain")


def matrices(rows: list[Row], embedder: StaticEmbedder | None = None) -> Matrices:
    embedder = embedder or shared_embedder()
    dense, emb, opts = [], [], []
    for r in rows:
        ef = embed_features.extract(r.prompt, embedder)
        dense.append(complexity_features.extract(r.prompt) + list(ef.extra))
        emb.append(ef.mean)
        opts.append(ef.has_options)
    return Matrices(np.array(dense, dtype=float).reshape(len(rows), len(DENSE_NAMES)),
                    np.array(emb, dtype=float).reshape(len(rows), -1), np.array(opts, dtype=bool),
                    np.array([r.weak_ok for r in rows]), np.array([r.strong_ok for r in rows]))


def _round(v: np.ndarray) -> tuple[float, ...]:
    return tuple(round(float(t), 8) for t in v)  # short, stable JSON


def fit_head(m: Matrices, l2: float, pca_dims: int) -> Head:
    mean, scale = standardise(m.dense)
    x = (m.dense - mean) / scale
    if pca_dims == 0:
        w, b = fit_logistic(x, m.label, l2)
        return Head(_round(mean), _round(scale), _round(w), (), round(b, 8))
    mu = m.emb.mean(axis=0)
    # Top principal directions of the mean vectors, from the covariance's eigenvectors.
    evals, evecs = np.linalg.eigh(np.cov(m.emb - mu, rowvar=False))
    v = evecs[:, np.argsort(-evals, kind="stable")[:pca_dims]].T  # (k, 256)
    p = (m.emb - mu) @ v.T
    p_mean, p_scale = standardise(p)
    w, b = fit_logistic(np.hstack([x, (p - p_mean) / p_scale]), m.label, l2)
    wx, wp = w[: x.shape[1]], w[x.shape[1]:] / p_scale
    # Fold PCA and standardisation into one vector: wp·((e - mu)V' - p_mean) = u·e - const.
    u = v.T @ wp
    bias = b - float(mu @ u) - float(p_mean @ wp)
    return Head(_round(mean), _round(scale), _round(wx), _round(u), round(bias, 8))


def fit(m: Matrices, l2_options: float, l2_free: float, embedding: dict[str, str],
        meta: dict | None = None) -> EmbeddingScorer:
    return EmbeddingScorer(fit_head(m.take(np.flatnonzero(m.options)), l2_options, PCA_DIMS),
                           fit_head(m.take(np.flatnonzero(~m.options)), l2_free, 0),
                           embedding, meta or {})


def scores(s: EmbeddingScorer, m: Matrices) -> np.ndarray:
    """Vectorised scores, ranked as the scorer ranks: the logit, or with hurt heads the gain."""
    if s.hurt is None:
        return logits(s, m)
    hurt = replace(s, options=s.hurt[0], free=s.hurt[1], hurt=None)
    return (1 + _sigmoid(logits(s, m)) - _sigmoid(logits(hurt, m))) / 2


def _sigmoid(z: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-z))


def logits(s: EmbeddingScorer, m: Matrices) -> np.ndarray:
    """Vectorised logits of the needs-strong heads (ranks as their probabilities do)."""
    out = np.zeros(len(m.dense))
    for head, mask in ((s.options, m.options), (s.free, ~m.options)):
        w = np.array(head.weights) / np.array(head.scale)
        z = (m.dense[mask] - np.array(head.mean)) @ w + head.bias
        if head.embed_weights:
            z += m.emb[mask] @ np.array(head.embed_weights)
        out[mask] = z
    return out


def choose_l2(fit_m: Matrices, val_m: Matrices, embedding: dict[str, str]) -> tuple[float, float, dict]:
    """Each head's L2 by validation APGR on its own rows (ties: the stronger L2)."""
    table: dict[str, dict[str, float]] = {"options": {}, "free": {}}
    for l2o, l2f in zip(L2_OPTIONS, L2_FREE, strict=True):
        sc = logits(fit(fit_m, l2o, l2f, embedding), val_m)
        for name, mask, l2 in (("options", val_m.options, l2o), ("free", ~val_m.options, l2f)):
            if mask.any() and (val_m.strong[mask].mean() > val_m.weak[mask].mean()):
                table[name][str(l2)] = round(routing_curve(sc[mask], val_m.weak[mask],
                                                           val_m.strong[mask]).apgr, 6)
    pick = lambda grid, name: max(grid, key=lambda l2: (table[name].get(str(l2), 0.0), l2))  # noqa: E731
    return pick(L2_OPTIONS, "options"), pick(L2_FREE, "free"), table


def embedding_info(embedder: StaticEmbedder) -> dict[str, str]:
    from importlib.metadata import version

    return {"package": PACKAGE, "version": version(PACKAGE), "table": WEIGHTS,
            "fingerprint": embedder.fingerprint}


def fit_recipe(train_rows: list[Row], seed: int, embedder: StaticEmbedder | None = None,
               cache: FeatureCache | None = None, extra: Matrices | None = None,
               objective: Objective = "needs-strong",
               swap: bool = False) -> tuple[EmbeddingScorer, Matrices]:
    """The whole recipe on some rows: inner split, L2 per head, refit. Used by train and k-fold.
    `extra`: more training rows (labelled traffic) for the refit; L2 is still chosen on the rows.
    `objective` "gain": also fit hurt heads, the same recipe on "only the weak model was right"."""
    embedder = embedder or shared_embedder()
    if objective == "gain":
        scorer, m = fit_recipe(train_rows, seed, embedder, cache, extra)
        hurt, _ = fit_recipe(train_rows, seed, embedder, cache, extra, swap=True)
        meta = {**scorer.meta, "objective": "gain", "hurt_l2_options": hurt.meta["l2_options"],
                "hurt_l2_free": hurt.meta["l2_free"], "hurt_validation_apgr": hurt.meta["validation_apgr"]}
        return replace(scorer, hurt=(hurt.options, hurt.free), meta=meta), m
    info = embedding_info(embedder)
    inner = split_rows(train_rows, HELDOUT_SHARE, seed + 1)

    def get(rows: list[Row]) -> Matrices:
        got = matrices(rows, embedder) if cache is None else cache.rows(rows)
        return got.swapped() if swap else got
    if swap and extra is not None:
        extra = extra.swapped()
    l2o, l2f, table = choose_l2(get(inner.train), get(inner.test), info)
    m = get(train_rows)
    meta = {"seed": seed, "l2_options": l2o, "l2_free": l2f, "pca_dims": PCA_DIMS,
            "label": "weak wrong and strong right", "validation_apgr": table,
            "n_train": len(train_rows)}
    if extra is not None and len(extra):
        m = m + extra
        meta["n_feedback"] = len(extra)
    return fit(m, l2o, l2f, info, meta), m


@dataclass(frozen=True)
class TrainResult:
    scorer: EmbeddingScorer
    threshold: float


def train(data_dir: Path, seed: int = 0, strong_share: float = 0.3,
          extra: Matrices | None = None, objective: Objective = "needs-strong") -> TrainResult:
    """`extra`: labelled traffic (route-train --from-feedback), added to the training rows."""
    rows = load_rows(data_dir)
    split = split_rows(rows, HELDOUT_SHARE, seed)
    scorer, m = fit_recipe(split.train, seed, extra=extra, objective=objective)
    scorer.meta.update({
        "heldout_share": HELDOUT_SHARE,
        "train_subjects": sorted({r.group for r in split.train if r.source != GSM8K}),
        "heldout_subjects": sorted({r.group for r in split.test if r.source != GSM8K}),
        "gsm8k_train_digests": sorted(r.digest for r in split.train if r.source == GSM8K),
    })
    probs = scores(scorer, m) if scorer.hurt is not None else _sigmoid(logits(scorer, m))
    return TrainResult(scorer, round(calibrate_threshold(probs, strong_share), 6))
