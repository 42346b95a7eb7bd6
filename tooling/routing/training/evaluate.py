"""`tierserve route-eval`: RouteLLM's methodology on prompts the scorer never trained on."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from app.routing.scorer import TrainedScorer
from tooling.routing.training.data import Row, load_rows, unseen
from tooling.routing.training.metrics import Curve, random_apgr, routing_curve


@dataclass(frozen=True)
class Report:
    curve: Curve
    random_apgr: float
    n: int
    p50_ms: float
    p99_ms: float
    per_source: dict[str, float]

    def as_json(self) -> dict[str, float | int]:
        return {"apgr": round(self.curve.apgr, 4), "cpt50": round(self.curve.cpt(0.5), 4),
                "cpt80": round(self.curve.cpt(0.8), 4), "random_apgr": round(self.random_apgr, 4),
                "n": self.n, "p50_ms": round(self.p50_ms, 4), "p99_ms": round(self.p99_ms, 4)}


def heldout_rows(data_dir: Path, scorer: TrainedScorer) -> list[Row]:
    """The rows of `data_dir` the scorer did not train on (all of them for unseen data)."""
    meta = scorer.meta
    return unseen(load_rows(data_dir), set(meta.get("train_subjects", ())),
                  set(meta.get("gsm8k_train_digests", ())))


def decision_latencies_ms(prompts: list[str], scorer: TrainedScorer, profile: str) -> np.ndarray:
    """Time the whole pipeline (features, rules, scorer, filters) as the router measures it."""
    from app.config.loader import load_config
    from app.protocol.internal import RouteRequest
    from app.routing.assemble import build_pipeline

    router = build_pipeline(load_config(profile), scorer=scorer)

    async def run() -> list[float]:
        out = []
        for i, p in enumerate(prompts):
            req = RouteRequest(request_id=f"eval-{i}", endpoint="chat", model="auto", prompt_text=p)
            out.append((await router.decide(req)).decision_ms)
        return out

    return np.array(asyncio.run(run()))


def evaluate(rows: list[Row], scorer: TrainedScorer, profile: str = "local-cpu") -> Report:
    weak = np.array([r.weak_ok for r in rows])
    strong = np.array([r.strong_ok for r in rows])
    scores = np.array([scorer.score_text(r.prompt) for r in rows])
    per_source = {}
    for source in sorted({r.source for r in rows}):
        idx = np.array([r.source == source for r in rows])
        per_source[source] = routing_curve(scores[idx], weak[idx], strong[idx]).apgr
    lat = decision_latencies_ms([r.prompt for r in rows], scorer, profile)
    return Report(routing_curve(scores, weak, strong), random_apgr(weak, strong), len(rows),
                  float(np.percentile(lat, 50)), float(np.percentile(lat, 99)), per_source)


def plot(report: Report, rows: list[Row], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    weak = np.array([r.weak_ok for r in rows])
    strong = np.array([r.strong_ok for r in rows])
    rand = routing_curve(np.random.default_rng(0).random(len(rows)), weak, strong)
    fig, ax = plt.subplots(figsize=(6, 4.2))
    c = report.curve
    ax.plot(c.strong_share * 100, c.quality * 100,
            label=f"learned scorer (APGR {c.apgr:.3f})")
    ax.plot(rand.strong_share * 100, rand.quality * 100, "--",
            label=f"random (APGR {report.random_apgr:.3f}, mean of 10 seeds)")
    ax.axhline(weak.mean() * 100, color="grey", lw=0.8, ls=":", label="all fast (weak)")
    ax.axhline(strong.mean() * 100, color="black", lw=0.8, ls=":", label="all reasoning (strong)")
    ax.set_xlabel("calls to the reasoning tier (%)")
    ax.set_ylabel("accuracy of routed answers (%)")
    ax.set_title(f"Held-out MMLU subjects + GSM8K rows (n={report.n})")
    ax.legend(fontsize=8, loc="lower right")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
