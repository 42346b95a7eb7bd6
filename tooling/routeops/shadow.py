"""`tierserve route-eval --shadow`: the live scorer against the shadow on recent traffic.

On every recorded decision that has a shadow score: how often the two pick the same tier,
the share each sends above the weakest tier, and how their scores rank together. On the
labelled ones (POST /v1/feedback): each scorer's AUC for "needed a stronger tier" and how
many labels each would have routed right.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from app.keys.traffic import Labelled, RouteRecord
from tooling.routeops.labels import weak_strong


@dataclass(frozen=True)
class ShadowReport:
    n: int
    live_versions: list[str]
    shadow_versions: list[str]
    agreement: float | None
    live_up_share: float | None  # sent above the weakest tier
    shadow_up_share: float | None
    rank_corr: float | None
    n_labelled: int
    live_auc: float | None
    shadow_auc: float | None
    live_right: float | None  # labels the scorer's tier agrees with
    shadow_right: float | None

    def as_json(self) -> dict:
        return asdict(self)


def auc(scores: np.ndarray, labels: np.ndarray) -> float | None:
    """P(a positive outranks a negative), ties half; None without both classes."""
    pos, neg = scores[labels], scores[~labels]
    if not len(pos) or not len(neg):
        return None
    ranks = _ranks(np.concatenate([pos, neg]))
    return float((ranks[: len(pos)].sum() - len(pos) * (len(pos) + 1) / 2) / (len(pos) * len(neg)))


def _ranks(x: np.ndarray) -> np.ndarray:
    """1-based ranks, ties averaged."""
    order = np.argsort(x, kind="stable")
    ranks = np.empty(len(x))
    ranks[order] = np.arange(1, len(x) + 1)
    for value in np.unique(x):
        tie = x == value
        ranks[tie] = ranks[tie].mean()
    return ranks


def compare(records: list[RouteRecord], labelled: list[Labelled], weak_tier: str,
            strong_tier: str) -> ShadowReport:
    both = [r for r in records if r.score is not None and r.shadow_score is not None]
    live = np.array([r.score for r in both], dtype=float)
    shadow = np.array([r.shadow_score for r in both], dtype=float)
    n = len(both)
    corr = None
    if n >= 3 and live.std() > 0 and shadow.std() > 0:
        corr = float(np.corrcoef(_ranks(live), _ranks(shadow))[0, 1])
    lab = [(item, ws) for item in labelled
           if item.record.score is not None and item.record.shadow_score is not None
           and (ws := weak_strong(item, weak_tier, strong_tier)) is not None]
    y = np.array([ws[1] and not ws[0] for _, ws in lab], dtype=bool)
    ls = np.array([item.record.score for item, _ in lab], dtype=float)
    ss = np.array([item.record.shadow_score for item, _ in lab], dtype=float)
    lt = np.array([item.record.tier != weak_tier for item, _ in lab], dtype=bool)
    st = np.array([item.record.shadow_tier != weak_tier for item, _ in lab], dtype=bool)

    def mean(x: np.ndarray) -> float | None:
        return float(x.mean()) if len(x) else None

    return ShadowReport(
        n=n, live_versions=sorted({r.scorer_version or "?" for r in both}),
        shadow_versions=sorted({r.shadow_version or "?" for r in both}),
        agreement=mean(np.array([r.tier == r.shadow_tier for r in both if r.reason == "score"])),
        live_up_share=mean(np.array([r.tier != weak_tier for r in both if r.reason == "score"])),
        shadow_up_share=mean(np.array([r.shadow_tier != weak_tier for r in both])),
        rank_corr=corr, n_labelled=len(lab), live_auc=auc(ls, y), shadow_auc=auc(ss, y),
        live_right=mean(lt == y), shadow_right=mean(st == y))


def text(report: ShadowReport) -> str:
    def pct(x: float | None) -> str:
        return "-" if x is None else f"{x:.1%}"

    def num(x: float | None) -> str:
        return "-" if x is None else f"{x:.3f}"

    return "\n".join([
        f"decisions with a shadow score: {report.n}",
        f"  live   {', '.join(report.live_versions) or '-'}",
        f"  shadow {', '.join(report.shadow_versions) or '-'}",
        f"same tier (decided by score): {pct(report.agreement)}   score rank correlation: "
        f"{num(report.rank_corr)}",
        f"sent above the weakest tier: live {pct(report.live_up_share)}, "
        f"shadow {pct(report.shadow_up_share)}",
        f"labelled (feedback): {report.n_labelled}",
        f"  AUC for 'needed a stronger tier': live {num(report.live_auc)}, shadow {num(report.shadow_auc)}",
        f"  labels routed right: live {pct(report.live_right)}, shadow {pct(report.shadow_right)}",
    ])
