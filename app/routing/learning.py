"""What the router keeps for learning from traffic: training features and a shadow scorer.

Training features are the embedding scorer's inputs (hand features, embedding extras, the
mean token vector, which head), so `route-train --from-feedback` can refit on traffic
without the prompt text. The shadow is a candidate artifact scored beside the live one,
with the live ladder and thresholds, for `route-eval --shadow`; it never decides.
"""

from __future__ import annotations

from bisect import bisect_right
from pathlib import Path
from typing import Any

from app.config.loader import REPO_ROOT
from app.config.schema import TierserveConfig
from app.routing import complexity_features, embed_features
from app.routing.embedding import StaticEmbedder, shared_embedder
from app.routing.plugins.scorers import scorer_version
from app.routing.scorer import ComplexityScorer, load_scorer

FEATURES_VERSION = 1


def training_features(text: str, embedder: StaticEmbedder | None = None) -> dict[str, Any]:
    """One prompt's training row as JSON-able values (no text)."""
    ef = embed_features.extract(text, embedder or shared_embedder())
    dense = complexity_features.extract(text) + list(ef.extra)
    return {"v": FEATURES_VERSION, "dense": [round(float(x), 6) for x in dense],
            "emb": [round(float(x), 6) for x in ef.mean], "options": bool(ef.has_options)}


class ShadowScorer:
    """A candidate artifact: its score and the tier the live thresholds would give it."""

    def __init__(self, config: TierserveConfig, artifact: str) -> None:
        path = REPO_ROOT / artifact
        self.scorer: ComplexityScorer = load_scorer(path)
        self.version = scorer_version(Path(path).name, Path(path).read_bytes())
        self._ladder = tuple(config.routing.ladder)
        self._thresholds = tuple(config.routing.thresholds)

    def score_text(self, text: str) -> float:
        from app.routing.features import RequestFeatures

        feats = RequestFeatures(text=text, lower=text.lower(), prompt_tokens=0, turns=1,
                                has_code=False, reasoning_effort=None, max_tokens=None)
        return float(self.scorer.score(feats))

    def tier(self, score: float) -> str:
        return self._ladder[bisect_right(self._thresholds, score)]
