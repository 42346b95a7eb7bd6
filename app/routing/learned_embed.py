"""The embedding scorer (v2): logistic regression on hand features + static-embedding features.

Two heads, chosen by the prompt's shape: multiple-choice prompts (an A-D option block)
and free-form ones. The multiple-choice head also reads the mean token vector through a
PCA that training folds into one 256-wide weight vector, so scoring is one dot product
per block. Artifact: plain JSON (no pickle) with the embedding table's fingerprint, so
a different `wordllama` table is refused rather than silently mis-scored.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from app.routing import complexity_features, embed_features
from app.routing.embedding import StaticEmbedder, shared_embedder
from app.routing.features import RequestFeatures
from app.routing.learned import ArtifactError

MODEL = "logistic-embed"
ARTIFACT_VERSION = 2
DENSE_NAMES = complexity_features.FEATURE_NAMES + embed_features.EXTRA_NAMES


@dataclass(frozen=True)
class Head:
    mean: tuple[float, ...]  # per DENSE_NAMES
    scale: tuple[float, ...]
    weights: tuple[float, ...]
    embed_weights: tuple[float, ...]  # per embedding dimension; empty = head ignores it
    bias: float

    def arrays(self) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
        w = np.array(self.weights) / np.array(self.scale)
        u = np.array(self.embed_weights, dtype=np.float32) if self.embed_weights else None
        return w, np.array(self.mean), u

    def to_dict(self) -> dict[str, Any]:
        return {"mean": list(self.mean), "scale": list(self.scale), "weights": list(self.weights),
                "embed_weights": list(self.embed_weights), "bias": self.bias}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Head:
        def floats(key: str) -> tuple[float, ...]:
            return tuple(map(float, d[key]))

        return cls(mean=floats("mean"), scale=floats("scale"), weights=floats("weights"),
                   embed_weights=floats("embed_weights"), bias=float(d["bias"]))


@dataclass(frozen=True)
class EmbeddingScorer:
    options: Head  # multiple-choice prompts
    free: Head  # everything else
    embedding: dict[str, str]  # package, version, table, fingerprint
    meta: dict[str, Any] = field(default_factory=dict, compare=False)
    feature_names: tuple[str, ...] = DENSE_NAMES
    # Objective "gain" (route-train --objective gain): heads for P(weak right, strong wrong); the
    # score is then (1 + P(only strong right) - P(only weak right)) / 2, the expected gain of
    # going up (what APGR rewards), in [0, 1].
    hurt: tuple[Head, Head] | None = None  # (options, free)

    def __post_init__(self) -> None:
        if self.feature_names != DENSE_NAMES:
            raise ArtifactError("artifact was trained on other features; run `tierserve route-train`")
        for head in (self.options, self.free, *(self.hurt or ())):
            if not len(head.mean) == len(head.scale) == len(head.weights) == len(DENSE_NAMES):
                raise ArtifactError(f"artifact head vectors must have {len(DENSE_NAMES)} entries")

    def bind(self, embedder: StaticEmbedder | None = None) -> BoundEmbeddingScorer:
        embedder = embedder or shared_embedder()
        if embedder.fingerprint != self.embedding.get("fingerprint"):
            raise ArtifactError(f"embedding table {embedder.fingerprint} is not the one the artifact "
                                f"was trained with ({self.embedding.get('fingerprint')}); "
                                "install the pinned wordllama or retrain")
        return BoundEmbeddingScorer(self, embedder)

    def to_dict(self) -> dict[str, Any]:
        heads = {"options": self.options.to_dict(), "free": self.free.to_dict()}
        if self.hurt is not None:
            heads |= {"hurt_options": self.hurt[0].to_dict(), "hurt_free": self.hurt[1].to_dict()}
        return {"version": ARTIFACT_VERSION, "model": MODEL, "features": list(self.feature_names),
                "embedding": self.embedding, "heads": heads, "meta": self.meta}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> EmbeddingScorer:
        if data.get("version") != ARTIFACT_VERSION or data.get("model") != MODEL:
            raise ArtifactError(f"unsupported artifact version/model: {data.get('version')}/"
                                f"{data.get('model')}")
        try:
            heads = data["heads"]
            hurt = ((Head.from_dict(heads["hurt_options"]), Head.from_dict(heads["hurt_free"]))
                    if "hurt_options" in heads else None)
            return cls(Head.from_dict(heads["options"]), Head.from_dict(heads["free"]),
                       dict(data["embedding"]), dict(data.get("meta") or {}),
                       tuple(data["features"]), hurt)
        except (KeyError, TypeError) as exc:
            raise ArtifactError(f"artifact is missing a field: {exc}") from exc

    def dumps(self) -> str:
        """Canonical JSON: the same model always gives the same bytes."""
        return json.dumps(self.to_dict(), indent=1, sort_keys=True) + "\n"


class BoundEmbeddingScorer:
    """An EmbeddingScorer with its table loaded: the ComplexityScorer the router calls."""

    def __init__(self, model: EmbeddingScorer, embedder: StaticEmbedder) -> None:
        self.model = model
        self.meta = model.meta
        self._emb = embedder
        self._heads = {True: model.options.arrays(), False: model.free.arrays()}
        self._bias = {True: model.options.bias, False: model.free.bias}
        self._hurt = None if model.hurt is None else (
            {True: model.hurt[0].arrays(), False: model.hurt[1].arrays()},
            {True: model.hurt[0].bias, False: model.hurt[1].bias})

    @staticmethod
    def _z(heads: dict, bias: dict, x: np.ndarray, ef: embed_features.EmbedFeatures) -> float:
        w, m, u = heads[ef.has_options]
        z = bias[ef.has_options] + float((x - m) @ w)
        if u is not None:
            z += float(ef.mean @ u)
        return z

    def _logits(self, text: str) -> tuple[float, float | None]:
        ef = embed_features.extract(text, self._emb)
        x = np.array(complexity_features.extract(text) + list(ef.extra))
        z = self._z(self._heads, self._bias, x, ef)
        return z, None if self._hurt is None else self._z(*self._hurt, x, ef)

    def logit(self, text: str) -> float:
        return self._logits(text)[0]

    def score_text(self, text: str) -> float:
        z, hurt = self._logits(text)
        if hurt is None:
            return _sigmoid(z)
        return (1.0 + _sigmoid(z) - _sigmoid(hurt)) / 2

    def score(self, features: RequestFeatures) -> float:
        return self.score_text(features.text)

    def dumps(self) -> str:
        return self.model.dumps()


def _sigmoid(z: float) -> float:
    if z >= 0:  # two branches keep exp() from overflowing
        return 1.0 / (1.0 + math.exp(-z))
    e = math.exp(z)
    return e / (1.0 + e)


def load(path: str | Path) -> BoundEmbeddingScorer:
    path = Path(path)
    try:
        data = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise ArtifactError(f"{path}: cannot read scorer artifact: {exc}") from exc
    return EmbeddingScorer.from_dict(data).bind()
