"""RouteLLM's router metrics: quality vs strong-call fraction, PGR, APGR and CPT.

Sweeping the threshold over the scores sends the top-k prompts to the strong
model; tied scores move together, so the curve has a point at every tie
boundary and is linear in between (the expectation under random tie-breaking).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Curve:
    strong_share: np.ndarray  # fraction of prompts sent to the strong model, 0..1
    quality: np.ndarray  # mean correctness of the routed answers
    pgr: np.ndarray  # (quality - weak) / (strong - weak)

    @property
    def apgr(self) -> float:
        return trapezoid(self.pgr, self.strong_share)

    def cpt(self, target: float) -> float:
        """The smallest strong-call fraction whose PGR reaches `target` (interpolated)."""
        x, y = self.strong_share, self.pgr
        for i in range(1, len(x)):
            if y[i] >= target:
                if y[i] == y[i - 1]:
                    return float(x[i])
                return float(x[i - 1] + (x[i] - x[i - 1]) * (target - y[i - 1]) / (y[i] - y[i - 1]))
        return 1.0


def trapezoid(y: np.ndarray, x: np.ndarray) -> float:
    # np.trapz is gone from numpy 2.x and np.trapezoid is missing from 1.x.
    return float(np.sum((y[1:] + y[:-1]) * np.diff(x)) / 2)


def routing_curve(scores: np.ndarray, weak_ok: np.ndarray, strong_ok: np.ndarray) -> Curve:
    scores = np.asarray(scores, dtype=float)
    weak, strong = np.asarray(weak_ok, dtype=float), np.asarray(strong_ok, dtype=float)
    n = len(scores)
    if n == 0:
        raise ValueError("no prompts to evaluate")
    order = np.argsort(-scores, kind="stable")
    gain = np.concatenate([[0.0], np.cumsum((strong - weak)[order])])
    ranked = scores[order]
    cuts = np.concatenate([[0], np.flatnonzero(ranked[1:] != ranked[:-1]) + 1, [n]])
    quality = (weak.sum() + gain[cuts]) / n
    span = strong.mean() - weak.mean()
    if span <= 0:
        raise ValueError("the strong model is not better than the weak one here: PGR is undefined")
    return Curve(cuts / n, quality, (quality - weak.mean()) / span)


def random_apgr(weak_ok: np.ndarray, strong_ok: np.ndarray, seeds: int = 10) -> float:
    """The random router: uniform scores, mean APGR over `seeds` seeds."""
    n = len(weak_ok)
    return float(np.mean([routing_curve(np.random.default_rng(s).random(n), weak_ok,
                                        strong_ok).apgr for s in range(seeds)]))
