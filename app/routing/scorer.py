"""The learned scorer's interface: P(request needs the strong tier), from the request alone."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Protocol

from app.routing.features import RequestFeatures


class ComplexityScorer(Protocol):
    def score(self, features: RequestFeatures) -> float:
        """Probability in [0, 1] that the weak tier would get this wrong and the strong one right."""
        ...


class TrainedScorer(ComplexityScorer, Protocol):
    """A scorer loaded from an artifact: what training and evaluation read besides the score."""

    @property
    def meta(self) -> dict[str, Any]:  # train_subjects, gsm8k_train_digests, ...
        ...

    def score_text(self, text: str) -> float: ...


def load_scorer(path: str | Path) -> TrainedScorer:
    """The scorer an artifact describes: its `model` field picks the class (selectable in
    configs/routing.yaml via `learned.artifact`)."""
    from app.routing import learned, learned_embed

    path = Path(path)
    try:
        model = json.loads(path.read_text()).get("model")
    except (OSError, json.JSONDecodeError, AttributeError) as exc:
        raise learned.ArtifactError(f"{path}: cannot read scorer artifact: {exc}") from exc
    if model == learned_embed.MODEL:
        return learned_embed.load(path)
    return learned.LearnedScorer.load(path)
