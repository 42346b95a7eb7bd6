"""Feedback labels -> training rows for the embedding scorer.

The scorer predicts "the weak tier gets it wrong and a stronger one right", so a label
counts only where it says that, or its opposite:

- `needed_stronger` below the strongest tier: weak wrong, strong right (label 1);
  on the strongest tier no tier would have done better (label 0).
- `fine` on the weakest tier: weak right (label 0); on a stronger tier it says nothing
  about the weak one, so the row is skipped.
- `score` s: s >= 0.5 reads as `fine`, below as `needed_stronger`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from app.keys.traffic import Labelled
from app.routing.learned_embed import DENSE_NAMES
from app.routing.learning import FEATURES_VERSION
from tooling.routing.training.train_embed import Matrices


@dataclass(frozen=True)
class FeedbackRows:
    rows: Matrices
    used: int
    skipped_no_features: int
    skipped_uninformative: int


def weak_strong(item: Labelled, weak_tier: str, strong_tier: str) -> tuple[bool, bool] | None:
    """(weak_ok, strong_ok) as the label implies them, or None if it implies neither."""
    outcome = item.outcome
    if outcome == "score":
        outcome = "fine" if (item.value or 0.0) >= 0.5 else "needed_stronger"
    tier = item.record.tier
    if outcome == "needed_stronger":
        return (False, False) if tier == strong_tier else (False, True)
    return (True, True) if tier == weak_tier else None


def _usable(features: dict | None) -> bool:
    return bool(features) and features.get("v") == FEATURES_VERSION \
        and len(features.get("dense") or ()) == len(DENSE_NAMES)


def feedback_rows(items: list[Labelled], weak_tier: str, strong_tier: str) -> FeedbackRows:
    dense, emb, opts, weak, strong = [], [], [], [], []
    no_features = uninformative = 0
    for item in items:
        feats = item.record.features
        if not _usable(feats):
            no_features += 1
            continue
        assert feats is not None
        ws = weak_strong(item, weak_tier, strong_tier)
        if ws is None:
            uninformative += 1
            continue
        dense.append(feats["dense"])
        emb.append(feats["emb"])
        opts.append(bool(feats["options"]))
        weak.append(ws[0])
        strong.append(ws[1])
    width = len(emb[0]) if emb else 0
    rows = Matrices(np.array(dense, dtype=float).reshape(len(dense), len(DENSE_NAMES)),
                    np.array(emb, dtype=float).reshape(len(emb), width), np.array(opts, dtype=bool),
                    np.array(weak, dtype=bool), np.array(strong, dtype=bool))
    return FeedbackRows(rows, len(dense), no_features, uninformative)
