"""Config names of routing plugins -> their classes. Built-ins are listed here; any other
class is named in config as `package.module:Class` (no edit here needed)."""

from __future__ import annotations

import importlib

from app.routing.plugin import KINDS, Plugin
from app.routing.plugins import budget_picker, cost_picker, filters, picker, pins, plan, scorers, team

BUILTIN: dict[str, type[Plugin]] = {
    "model": pins.ModelPin,
    "header": pins.HeaderPin,
    "reasoning-effort": pins.ReasoningEffortPin,
    "rules": pins.RulesPin,
    "learned": scorers.LearnedScore,
    "team": team.TeamScore,
    "ladder": picker.LadderPicker,
    "cost-ladder": cost_picker.CostLadderPicker,
    "cost-budget": budget_picker.CostBudgetPicker,
    "health": filters.HealthFilter,
    "context-fit": filters.ContextFitFilter,
    "affinity": filters.AffinityFilter,
    "fallback": plan.FallbackPlan,
}


class UnknownPlugin(LookupError):
    """A config names a plugin that does not exist or is of the wrong kind."""


def plugin_class(name: str, kind: str) -> type[Plugin]:
    """The class config name `name` means, checked to be a plugin of `kind` (a key of KINDS)."""
    base = KINDS[kind]
    known = sorted(n for n, c in BUILTIN.items() if issubclass(c, base))
    cls: object = BUILTIN.get(name)
    if cls is None and ":" in name:
        module, _, attr = name.partition(":")
        try:
            cls = getattr(importlib.import_module(module), attr)
        except (ImportError, AttributeError) as exc:
            raise UnknownPlugin(f"cannot import plugin {name!r}: {exc}") from None
    if cls is None:
        raise UnknownPlugin(f"unknown {base.kind} plugin {name!r}; known: {known} "
                            "(or `package.module:Class`)")
    if not (isinstance(cls, type) and issubclass(cls, base)):
        raise UnknownPlugin(f"{name!r} is not a {base.kind} plugin (a subclass of {base.__name__})")
    return cls
