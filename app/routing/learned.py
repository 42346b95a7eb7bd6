"""The learned complexity scorer: logistic regression on topic-agnostic prompt features.

The artifact is plain JSON (no pickle): feature names, standardisation and
weights. Scoring is ~30 multiply-adds in pure Python after feature extraction.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from app.routing.complexity_features import FEATURE_NAMES, extract
from app.routing.features import RequestFeatures

ARTIFACT_VERSION = 1


class ArtifactError(ValueError):
    """The scorer artifact is missing, malformed or made for other features."""


@dataclass(frozen=True)
class LearnedScorer:
    feature_names: tuple[str, ...]
    mean: tuple[float, ...]
    scale: tuple[float, ...]
    weights: tuple[float, ...]
    bias: float
    # Provenance (seed, split, validation figures); never read when scoring.
    meta: dict[str, Any] = field(default_factory=dict, compare=False)

    def __post_init__(self) -> None:
        if self.feature_names != FEATURE_NAMES:
            raise ArtifactError("artifact was trained on other features; run `tierserve route-train`")
        n = len(self.feature_names)
        if not len(self.mean) == len(self.scale) == len(self.weights) == n:
            raise ArtifactError(f"artifact vectors must all have {n} entries")

    def logit(self, text: str) -> float:
        z = self.bias
        for x, m, s, w in zip(extract(text), self.mean, self.scale, self.weights, strict=True):
            z += w * (x - m) / s
        return z

    def score_text(self, text: str) -> float:
        z = self.logit(text)
        # Two branches keep exp() from overflowing for large |z|.
        if z >= 0:
            return 1.0 / (1.0 + math.exp(-z))
        e = math.exp(z)
        return e / (1.0 + e)

    def score(self, features: RequestFeatures) -> float:
        return self.score_text(features.text)

    def contributions(self, text: str) -> dict[str, float]:
        """Each feature's share of the logit, for explanations."""
        return {name: w * (x - m) / s for name, x, m, s, w in
                zip(self.feature_names, extract(text), self.mean, self.scale, self.weights, strict=True)}

    def to_dict(self) -> dict[str, Any]:
        return {"version": ARTIFACT_VERSION, "model": "logistic",
                "features": list(self.feature_names), "mean": list(self.mean),
                "scale": list(self.scale), "weights": list(self.weights), "bias": self.bias,
                "meta": self.meta}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> LearnedScorer:
        if data.get("version") != ARTIFACT_VERSION or data.get("model") != "logistic":
            raise ArtifactError(f"unsupported artifact version/model: {data.get('version')}/"
                                f"{data.get('model')}")
        try:
            return cls(tuple(data["features"]), tuple(map(float, data["mean"])),
                       tuple(map(float, data["scale"])), tuple(map(float, data["weights"])),
                       float(data["bias"]), dict(data.get("meta") or {}))
        except (KeyError, TypeError) as exc:
            raise ArtifactError(f"artifact is missing a field: {exc}") from exc

    @classmethod
    def load(cls, path: str | Path) -> LearnedScorer:
        path = Path(path)
        try:
            data = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError) as exc:
            raise ArtifactError(f"{path}: cannot read scorer artifact: {exc}") from exc
        return cls.from_dict(data)

    def dumps(self) -> str:
        """Canonical JSON: the same model always gives the same bytes."""
        return json.dumps(self.to_dict(), indent=1, sort_keys=True) + "\n"
