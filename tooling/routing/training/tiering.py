"""What tiering saves, offline: accuracy and priced cost of a two-tier policy on labelled prompts.

Shared by `tierserve route-eval --tiering` (no Ray: the pipeline runs in process) and
`tierserve bench tiering` (which replays the same prompts through a running stack). A prompt's
price on a tier is (its chat-templated prompt tokens + `ANSWER_TOKENS`) x the tier's
`cost_per_1k_tokens`, tokens counted with the tier's own tokenizer where its model is local;
accuracy is the label of the tier the prompt goes to. Both are reported relative to sending
everything to the strong tier.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from app.config.loader import REPO_ROOT
from app.config.schema import TierserveConfig
from app.routing.features import estimate_tokens
from tooling.routing.training.data import Row

ANSWER_TOKENS = 16  # what `tierserve bench tiering` asks for (max_tokens)
MARGIN_TOKENS = 256  # room left in the weak tier's context


def token_counter(config: TierserveConfig, tier: str) -> Callable[[str], int]:
    """Prompt tokens as the tier's engine counts them (chat template included) where its model
    is local; otherwise the router's estimate (bytes/4 undercounts the tiny models' by ~2.3x)."""
    path = REPO_ROOT / config.tier(tier).model_source
    if not path.is_dir():
        return estimate_tokens
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(path)

    def count(text: str) -> int:
        if tok.chat_template:
            text = tok.apply_chat_template([{"role": "user", "content": text}],
                                           add_generation_prompt=True, tokenize=False)
            return len(tok.encode(text, add_special_tokens=False))
        return len(tok.encode(text))
    return count


@dataclass(frozen=True)
class Priced:
    """Labelled prompts that fit the weak tier, with each one's price on either tier."""

    rows: list[Row]
    weak_ok: np.ndarray
    strong_ok: np.ndarray
    weak_price: np.ndarray
    strong_price: np.ndarray


def priced(config: TierserveConfig, rows: Sequence[Row], answer_tokens: int = ANSWER_TOKENS,
           margin_tokens: int = MARGIN_TOKENS) -> Priced:
    weak, strong = config.routing.weak_tier, config.routing.strong_tier
    count_weak = token_counter(config, weak)
    count_strong = count_weak if config.tier(strong).model_source == config.tier(weak).model_source \
        else token_counter(config, strong)
    budget = config.tier(weak).max_model_len - margin_tokens
    kept, tw, ts = [], [], []
    for r in rows:
        n = count_weak(r.prompt)
        if n <= budget:
            kept.append(r)
            tw.append(n + answer_tokens)
            ts.append((count_strong(r.prompt) if count_strong is not count_weak else n) + answer_tokens)
    per_1k = lambda tier: config.tier(tier).cost_per_1k_tokens / 1000  # noqa: E731
    return Priced(kept, np.array([r.weak_ok for r in kept], dtype=bool),
                  np.array([r.strong_ok for r in kept], dtype=bool),
                  np.array(tw, dtype=float) * per_1k(weak), np.array(ts, dtype=float) * per_1k(strong))


@dataclass(frozen=True)
class Outcome:
    to_strong: float  # share of requests, by count
    rel_accuracy: float  # accuracy / all-strong accuracy
    rel_cost: float  # priced cost / all-strong priced cost
    threshold: float | None = None


def outcome(p: Priced, up: np.ndarray, threshold: float | None = None) -> Outcome:
    """The result of sending the prompts where `up` is true to the strong tier."""
    acc = np.where(up, p.strong_ok, p.weak_ok).mean()
    cost = np.where(up, p.strong_price, p.weak_price).sum()
    return Outcome(float(up.mean()), float(acc / p.strong_ok.mean()),
                   float(cost / p.strong_price.sum()), threshold)


@dataclass(frozen=True)
class Routed:
    """The pipeline's view of each prompt: decided by a rule/pin (`fixed_up` says where), or
    by comparing `key` (the picker's key of the score) with a threshold. `went_up` is where
    the configured pipeline sent each prompt, its threshold then in `used` (a cost-budget
    picker moves it as traffic goes by)."""

    scored: np.ndarray
    fixed_up: np.ndarray
    key: np.ndarray
    went_up: np.ndarray
    used: np.ndarray

    def up(self, threshold: float) -> np.ndarray:
        return np.where(self.scored, self.key >= threshold, self.fixed_up)


class LookupScorer:
    """Scores given in advance (e.g. out-of-fold ones), by prompt, for the real pipeline."""

    def __init__(self, prompts: Sequence[str], scores: np.ndarray) -> None:
        self._by_text = dict(zip(prompts, (float(s) for s in scores), strict=True))

    def score(self, features) -> float:
        return self._by_text[features.text]


def route(config: TierserveConfig, prompts: Sequence[str], scorer=None,
          scores: np.ndarray | None = None, seed: int = 0) -> Routed:
    """Every prompt through the whole pipeline (rules, filters, scorer, the picker), in a seeded
    random order: live traffic arrives mixed, not subject by subject. `scores`: use these
    instead of the scorer's (e.g. out-of-fold scores); rules do not read the score."""
    from app.routing.assemble import build_pipeline
    from app.routing.plugin import PickerPlugin
    from tooling.routing.training.calibrate import route_all

    if len(config.routing.ladder) != 2:
        raise ValueError(f"tiering compares two tiers; the ladder is {config.routing.ladder}")
    if scores is not None:
        scorer = LookupScorer(prompts, scores)
    picker = build_pipeline(config, scorer=scorer).picker.plugin
    assert isinstance(picker, PickerPlugin)
    order = np.random.default_rng(seed).permutation(len(prompts))
    decided = route_all(config, [prompts[i] for i in order], scorer, ANSWER_TOKENS)
    decisions = [decided[j] for j in np.argsort(order)]
    scored = np.array([d.reason == "score" and d.score is not None for d in decisions], dtype=bool)
    raw = np.array([d.score if d.score is not None else 0.0 for d in decisions], dtype=float)
    tokens = [int(d.features.get("prompt_tokens", 0)) for d in decisions]
    key = np.array([picker.key(float(s), t) for s, t in zip(raw, tokens, strict=True)])
    strong = config.routing.strong_tier
    went_up = np.array([d.tier == strong for d in decisions], dtype=bool)
    used = np.array([d.thresholds[0] if d.thresholds else np.nan for d in decisions], dtype=float)
    return Routed(scored, went_up & ~scored, key, went_up, used)


def sweep(p: Priced, routed: Routed, shares: Sequence[float] = tuple(np.arange(0.05, 1.0, 0.05))
          ) -> list[Outcome]:
    """Thresholds at quantiles of the scored keys, one per overall share to the strong tier
    (those the rules already send up count towards it)."""
    out = []
    keys = np.sort(routed.key[routed.scored])[::-1]
    fixed = int(routed.fixed_up.sum())
    for share in shares:
        k = round(share * len(p.rows)) - fixed
        if k <= 0 or not len(keys):
            t = float(keys[0]) + 1e-9 if len(keys) else 1.0
        else:
            t = float(keys[min(k, len(keys)) - 1])
        out.append(outcome(p, routed.up(t), t))
    return out


def frontier(p: Priced, routed: Routed) -> list[Outcome]:
    """Every distinct threshold over the scored keys, highest first (share rising)."""
    return [outcome(p, routed.up(float(t)), float(t))
            for t in np.unique(routed.key[routed.scored])[::-1]]


def cheapest_at(points: Sequence[Outcome], rel_accuracy: float) -> Outcome | None:
    """The point of least priced cost that keeps `rel_accuracy` (None: none does)."""
    ok = [o for o in points if o.rel_accuracy >= rel_accuracy]
    return min(ok, key=lambda o: (o.rel_cost, o.to_strong)) if ok else None


def with_picker(config: TierserveConfig, name: str, **params: float) -> TierserveConfig:
    """The config with another picker plugin in place of its own."""
    from app.config.schema import PluginRef

    routing = config.routing.model_copy(update={"plugins": config.routing.plugins.model_copy(
        update={"picker": PluginRef(name=name, params=params)})})
    return config.model_copy(update={"routing": routing})


def with_cost_ladder(config: TierserveConfig, completion_tokens: float,
                     length_power: float = 1.0) -> TierserveConfig:
    """The config with the cost-ladder picker (plugins/cost_picker.py) in place of its own."""
    return with_picker(config, "cost-ladder", completion_tokens=int(completion_tokens),
                       length_power=float(length_power))


def heldout_priced(config: TierserveConfig, data_dir: Path, scorer) -> Priced:
    """The repo's held-out split for this scorer (rows it never trained on), priced."""
    from tooling.routing.training.evaluate import heldout_rows

    return priced(config, heldout_rows(data_dir, scorer))
