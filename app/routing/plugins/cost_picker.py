"""The cost-aware ladder picker: sends a request up when its chance of needing the stronger
tier is high *per token the upgrade costs*.

Tiers are priced per token, so upgrading a short prompt costs a fraction of upgrading a long
one. Ranking by P(needs stronger) / (prompt tokens + expected answer tokens) is the greedy
knapsack order: for the same priced cost it buys more accuracy than ranking by the score
alone. The key compared with the thresholds is score * E / (prompt_tokens + E), in [0, 1],
with E = `completion_tokens`, the answer length the cost estimate assumes (the same for every
request, so thresholds calibrated on reference prompts hold for live ones).

`length_power` a softens the penalty: key = score * (E / (prompt_tokens + E)) ** a. a = 1 is
the knapsack order above; a = 0 is the plain ladder (score alone); in between trades the
priced cost of a share against how many requests, by count, go up.
"""

from __future__ import annotations

from bisect import bisect_right

from pydantic import Field

from app.routing.plugin import Context, NoParams, Setup
from app.routing.plugins.picker import LadderPicker


class CostParams(NoParams):
    completion_tokens: int = Field(256, gt=0)
    length_power: float = Field(1.0, ge=0.0, le=4.0)


class CostLadderPicker(LadderPicker):
    Params = CostParams

    def __init__(self, setup: Setup) -> None:
        super().__init__(setup)
        assert isinstance(setup.params, CostParams)
        self._e = float(setup.params.completion_tokens)
        self._power = float(setup.params.length_power)

    def key(self, score: float, prompt_tokens: int) -> float:
        return score * (self._e / (max(0, prompt_tokens) + self._e)) ** self._power

    def pick(self, ctx: Context, score: float) -> str:
        return self._ladder[bisect_right(self.thresholds, self.key(score, ctx.features.prompt_tokens))]
