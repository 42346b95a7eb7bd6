"""The cost-budget picker: the cost-ladder's order, with its threshold kept at a spend target.

A fixed threshold gives a fixed share only on traffic like the prompts it was calibrated on:
the cost-ladder's key mixes the score with the prompt's length, so shorter (or longer) traffic
moves both the share sent up and its price. Operators state the target they care about, the
priced cost as a share of sending every routed request to the strong tier, and this picker
holds it: it keeps the last `window` routed requests (their key and estimated price on either
tier) and sets the threshold where that window would have spent `target_cost_share`. Until
`min_samples` requests have been seen it uses the configured `threshold` (calibrated on
reference prompts to the same target by `tierserve route-train --calibrate-only`).

Requests a client pinned hard (a model name, the tier header, a reasoning effort) are the
client's choice and stay out of the window; those the rules pin count, at the price of the
tier they went to. Each router replica keeps its own window. Two tiers only.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike
from pydantic import Field

from app.routing.plugin import Context, Setup
from app.routing.plugins.cost_picker import CostLadderPicker, CostParams

REFRESH_EVERY = 4


class BudgetParams(CostParams):
    target_cost_share: float = Field(0.48, gt=0.0, le=1.0)
    window: int = Field(500, ge=16, le=100_000)
    min_samples: int = Field(16, ge=1)
    # The answer length a request's price assumes when it sets no max_tokens.
    answer_tokens: int = Field(256, gt=0)


def budget_threshold(keys: ArrayLike, tokens: ArrayLike, fixed_strong: ArrayLike,
                     weak_per_token: float, strong_per_token: float, target: float) -> float | None:
    """The least key at which sending up every request with a key >= it keeps the priced cost
    within `target` x the cost of sending all of them to the strong tier.

    keys: the picker's key per request, NaN where a rule fixed the tier (`fixed_strong` says
    which); tokens: each request's estimated tokens (prompt + answer). None: no scored request.
    """
    k = np.asarray(keys, dtype=float)
    t = np.asarray(tokens, dtype=float)
    fixed = np.asarray(fixed_strong, dtype=bool)
    scored = ~np.isnan(k)
    if not scored.any():
        return None
    extra = strong_per_token - weak_per_token
    # What is left for scored requests to go up, once every request pays the weak price and
    # the rule-pinned strong ones pay their upgrade.
    budget = target * strong_per_token * t.sum() - weak_per_token * t.sum() - extra * t[fixed & ~scored].sum()
    ks, cost = k[scored], extra * t[scored]
    order = np.argsort(-ks, kind="stable")
    n_up = int(np.searchsorted(np.cumsum(cost[order]), budget, side="right"))
    if n_up >= len(ks):
        return float(ks.min())
    if n_up == 0:
        return float(np.nextafter(ks.max(), np.inf))
    return float(ks[order[n_up - 1]])


class CostBudgetPicker(CostLadderPicker):
    Params = BudgetParams

    def __init__(self, setup: Setup) -> None:
        super().__init__(setup)
        assert isinstance(setup.params, BudgetParams)
        if len(self._ladder) != 2:
            raise ValueError(f"the cost-budget picker needs a two-tier ladder, not {list(self._ladder)}")
        self.params = setup.params
        config = setup.config
        self._weak_rate = config.tier(self._ladder[0]).cost_per_1k_tokens / 1000
        self._strong_rate = config.tier(self._ladder[1]).cost_per_1k_tokens / 1000
        n = setup.params.window
        # Ring buffers: the last `window` requests, oldest overwritten first.
        self._keys = np.full(n, np.nan)
        self._tokens = np.zeros(n)
        self._strong = np.zeros(n, dtype=bool)
        self._seen = 0

    def observe(self, ctx: Context, tier: str, score: float | None) -> None:
        tokens = ctx.features.prompt_tokens
        i = self._seen % len(self._keys)
        self._keys[i] = np.nan if score is None else self.key(score, tokens)
        self._tokens[i] = tokens + (ctx.features.max_tokens or self.params.answer_tokens)
        self._strong[i] = tier == self._ladder[1]
        self._seen += 1
        # Re-solved every few requests: one request barely moves a window of hundreds.
        if self._seen >= self.params.min_samples and self._seen % REFRESH_EVERY == 0:
            n = min(self._seen, len(self._keys))
            t = budget_threshold(self._keys[:n], self._tokens[:n], self._strong[:n], self._weak_rate,
                                 self._strong_rate, self.params.target_cost_share)
            if t is not None:
                self.thresholds = (t,)
