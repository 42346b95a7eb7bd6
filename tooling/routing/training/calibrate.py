"""Target shares -> ladder thresholds, through the whole routing pipeline.

Operators write policy as shares (e.g. 60/30/10 over fast/medium/reasoning). Rules and
pins send some requests to a tier whatever their score; the rest are spread by score.
So calibration runs every reference prompt through `build_pipeline`, takes the pinned
ones as given, and places each threshold at the score quantile that gives the scored
ones what the target still needs (RouteLLM's calibrate_threshold, one per boundary).
"""

from __future__ import annotations

import asyncio
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from app.config.schema import TierserveConfig
from app.protocol.internal import RouteDecision, RouteRequest
from app.routing.assemble import build_pipeline
from app.routing.plugin import PickerPlugin
from app.routing.plugins.budget_picker import CostBudgetPicker, budget_threshold
from app.routing.scorer import ComplexityScorer


def route_all(config: TierserveConfig, prompts: list[str], scorer: ComplexityScorer | None = None,
              max_tokens: int | None = None) -> list[RouteDecision]:
    """Decisions for `model: auto` requests without sessions, as the router makes them, in
    order (one pipeline: a picker that adapts to traffic sees them as a router would)."""
    pipeline = build_pipeline(config, scorer=scorer)

    async def run() -> list[RouteDecision]:
        return [await pipeline.decide(RouteRequest(request_id=f"cal-{i}", endpoint="chat", model="auto",
                                                   prompt_text=p, max_tokens=max_tokens))
                for i, p in enumerate(prompts)]
    return asyncio.run(run())


def shares_of(config: TierserveConfig, decisions: list[RouteDecision]) -> dict[str, float]:
    n = max(1, len(decisions))
    return {t: sum(d.tier == t for d in decisions) / n for t in config.routing.ladder}


@dataclass(frozen=True)
class Calibration:
    thresholds: list[float]
    target: dict[str, float]
    achieved: dict[str, float]  # on the reference prompts, with the new thresholds
    pinned_share: float  # decided by rules/pins, not by the score
    cost_target: float | None = None  # the cost-budget picker's: its threshold's starting point


def calibrate(config: TierserveConfig, prompts: list[str], shares: list[float],
              scorer: ComplexityScorer | None = None) -> Calibration:
    ladder = config.routing.ladder
    if len(shares) != len(ladder) or min(shares) < 0 or not sum(shares):
        raise ValueError(f"need one non-negative share per ladder tier {ladder}, got {shares}")
    shares = [s / sum(shares) for s in shares]
    decisions = route_all(config, prompts, scorer)
    picker = build_pipeline(config, scorer=scorer).picker.plugin
    assert isinstance(picker, PickerPlugin)
    if isinstance(picker, CostBudgetPicker):
        return _calibrate_budget(config, prompts, decisions, picker, scorer)
    # Thresholds are compared with the picker's key (the score, or e.g. score per token of cost).
    scored = np.array([picker.key(d.score, int(d.features.get("prompt_tokens", 0))) for d in decisions
                       if d.reason == "score" and d.score is not None])
    if not len(scored):
        raise ValueError("no reference prompt was decided by score; nothing to calibrate")
    pinned = [d.tier for d in decisions if d.reason != "score"]
    # What each tier still needs from the scored prompts once the pinned ones are counted.
    need = np.array([max(0.0, s * len(decisions) - pinned.count(t))
                     for s, t in zip(shares, ladder, strict=True)])
    cumulative = np.cumsum(need / need.sum())[:-1] if need.sum() else np.zeros(len(ladder) - 1)
    # Tier i gets scores in [t_{i-1}, t_i): t_i is the quantile of the share below it.
    thresholds = [round(float(np.quantile(scored, min(1.0, c), method="higher")), 6) if c < 1 else 1.0
                  for c in cumulative]
    thresholds = list(np.maximum.accumulate(np.clip(thresholds, 0.0, 1.0)))
    tuned = with_thresholds(config, thresholds)
    achieved = shares_of(tuned, route_all(tuned, prompts, scorer))
    return Calibration([float(t) for t in thresholds], dict(zip(ladder, shares, strict=True)), achieved,
                       len(pinned) / len(decisions))


def _calibrate_budget(config: TierserveConfig, prompts: list[str], decisions: list[RouteDecision],
                      picker: CostBudgetPicker, scorer: ComplexityScorer | None) -> Calibration:
    """The cost-budget picker's starting threshold: where the reference prompts, all at once,
    spend its target (live, it then follows the traffic's own window)."""
    keys, tokens, strong = [], [], []
    for d in decisions:
        n = int(d.features.get("prompt_tokens", 0))
        by_score = d.reason == "score" and d.score is not None
        keys.append(picker.key(d.score, n) if by_score and d.score is not None else float("nan"))
        tokens.append(float(n + picker.params.answer_tokens))
        strong.append(d.tier == config.routing.ladder[1])
    weak, strong_tier = (config.tier(t).cost_per_1k_tokens for t in config.routing.ladder)
    target = picker.params.target_cost_share
    t = budget_threshold(keys, tokens, strong, weak, strong_tier, target)
    if t is None:
        raise ValueError("no reference prompt was decided by score; nothing to calibrate")
    threshold = round(min(1.0, max(0.0, t)), 6)
    achieved = shares_of(config, route_all(with_thresholds(config, [threshold]), prompts, scorer))
    pinned = sum(d.reason != "score" for d in decisions) / len(decisions)
    return Calibration([threshold], achieved, achieved, pinned, cost_target=target)


def with_thresholds(config: TierserveConfig, thresholds: list[float]) -> TierserveConfig:
    one = thresholds[0] if len(thresholds) == 1 else config.routing.threshold
    routing = config.routing.model_copy(update={"thresholds": thresholds, "threshold": one})
    return config.model_copy(update={"routing": routing})


_THRESHOLDS = re.compile(r"^([ \t]*thresholds:[ \t]*)\[[^\]\n]*\]", re.M)
_THRESHOLD = re.compile(r"^(threshold:[ \t]*)([^\s#]+)", re.M)


def write_thresholds(path: Path, thresholds: list[float]) -> None:
    """Replace the `thresholds: [...]` line (or, for two tiers, the top-level `threshold:`)
    in `path`, keeping comments and layout."""
    text = path.read_text()
    new, count = _THRESHOLDS.subn(
        lambda m: m.group(1) + "[" + ", ".join(f"{t:.6g}" for t in thresholds) + "]", text, count=1)
    if not count and len(thresholds) == 1:
        new, count = _THRESHOLD.subn(lambda m: f"{m.group(1)}{thresholds[0]:.6g}", text, count=1)
    if count != 1:
        raise ValueError(f"{path}: no `thresholds: [...]` line to update")
    path.write_text(new)
