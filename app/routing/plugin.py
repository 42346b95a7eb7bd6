"""The routing pipeline's plugin interfaces: pins, scorers, a picker, filters and a plan.

A decision runs: pins (first hit wins) -> scorers (weighted mean, each in [0, 1]) ->
picker (score -> tier on the ladder) -> filters (drop tiers that cannot or should
not serve; the tier moves if its own is dropped) -> plan (fallback order). Plugins
are built once from config (`Setup`) and called per request with a `Context`;
the pipeline times each call and records what it contributed.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from pydantic import BaseModel, ConfigDict

from app.config.schema import TierserveConfig
from app.protocol.internal import RouteRequest
from app.routing.affinity import AffinityStore
from app.routing.features import RequestFeatures
from app.routing.scorer import ComplexityScorer


class NoParams(BaseModel):
    """A plugin's `params:` from config; subclasses declare their own fields."""

    model_config = ConfigDict(extra="forbid", frozen=True)


@dataclass(frozen=True)
class Setup:
    """What a plugin is built from: the whole config, its own params, shared services."""

    config: TierserveConfig
    params: BaseModel = NoParams()
    store: AffinityStore | None = None  # session affinity, when enabled
    scorer: ComplexityScorer | None = None  # a scorer given in code (tests, route-eval)


@dataclass
class Context:
    """One request as the plugins see it; `affinity_hit` is set by the affinity filter."""

    request: RouteRequest
    features: RequestFeatures
    unavailable: frozenset[str]
    affinity_hit: bool = False


@dataclass(frozen=True)
class Pin:
    """A tier chosen before scoring. `hard`: nothing after may move it (no affinity,
    filters or fallback), as when the client names the tier."""

    tier: str
    reason: str
    hard: bool = True
    matched: tuple[str, ...] = ()  # rule names, for explanations


class Plugin:
    kind: ClassVar[str] = ""
    Params: ClassVar[type[BaseModel]] = NoParams

    def __init__(self, setup: Setup) -> None:
        self.setup = setup


class PinPlugin(Plugin):
    kind = "pin"
    # A pin that decides for the client (model name, header) leaves nothing to score.
    skips_scoring: ClassVar[bool] = False

    def pin(self, ctx: Context) -> Pin | None:
        raise NotImplementedError


class ScorerPlugin(Plugin):
    """P(the request needs a stronger tier), in [0, 1], or None to abstain. A scorer never
    sees its weight: the pipeline clamps, weights and combines."""

    kind = "scorer"
    version: str | None = None  # e.g. artifact name + hash, for decision logs

    def score(self, ctx: Context) -> float | None:
        raise NotImplementedError


class PickerPlugin(Plugin):
    """Turns the combined score into a tier."""

    kind = "picker"
    thresholds: tuple[float, ...] = ()

    def pick(self, ctx: Context, score: float) -> str:
        raise NotImplementedError

    def key(self, score: float, prompt_tokens: int) -> float:
        """What the thresholds are compared with (calibration reads it too): the score itself,
        unless the picker weighs it, e.g. by the cost of the request (plugins/cost_picker.py)."""
        return score

    def observe(self, ctx: Context, tier: str, score: float | None) -> None:
        """Told where each request went that the client did not pin hard: `score` when this
        picker decided it (a filter may have moved it since), None when a rule or the default
        did. A picker that adapts its thresholds to traffic learns here."""


class FilterPlugin(Plugin):
    """Keeps the candidate tiers that may serve this request. If the chosen tier is dropped
    the pipeline moves to the nearest kept one and gives `moved_reason` as the reason."""

    kind = "filter"
    moved_reason: ClassVar[str] = ""

    async def keep(self, ctx: Context, tier: str, candidates: list[str]) -> list[str]:
        raise NotImplementedError

    async def chosen(self, ctx: Context, tier: str) -> None:
        """Told the final tier of every decision (pinned ones too)."""


class PlanPlugin(Plugin):
    """The tiers to try, in order, if the chosen one cannot serve before its first token."""

    kind = "plan"

    def fallbacks(self, ctx: Context, tier: str) -> list[str]:
        raise NotImplementedError


KINDS: dict[str, type[Plugin]] = {"pins": PinPlugin, "scorers": ScorerPlugin, "picker": PickerPlugin,
                                  "filters": FilterPlugin, "plan": PlanPlugin}
