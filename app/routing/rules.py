"""Deterministic YAML rules: each names a tier and the conditions that send a request there."""

from __future__ import annotations

import re
from dataclasses import dataclass

from app.config.schema import RoutingRule
from app.routing.features import RequestFeatures


@dataclass(frozen=True)
class CompiledRule:
    rule: RoutingRule
    patterns: tuple[re.Pattern[str], ...]

    @classmethod
    def compile(cls, rule: RoutingRule) -> "CompiledRule":
        return cls(rule, tuple(re.compile(p, re.I) for p in rule.match.patterns))

    @property
    def name(self) -> str:
        return self.rule.name

    @property
    def tier(self) -> str:
        return self.rule.tier

    def matches(self, f: RequestFeatures) -> bool:
        m = self.rule.match
        checks = (
            m.min_prompt_tokens is None or f.prompt_tokens >= m.min_prompt_tokens,
            m.max_prompt_tokens is None or f.prompt_tokens <= m.max_prompt_tokens,
            not self.patterns or any(p.search(f.text) for p in self.patterns),
            m.has_code is None or f.has_code == m.has_code,
            m.min_turns is None or f.turns >= m.min_turns,
            not m.reasoning_effort or f.reasoning_effort in m.reasoning_effort,
        )
        return all(checks)


class RuleSet:
    """Rules in config order; the first match wins."""

    def __init__(self, rules: list[RoutingRule]) -> None:
        self._rules = [CompiledRule.compile(r) for r in rules]

    def matching(self, f: RequestFeatures) -> list[CompiledRule]:
        return [r for r in self._rules if r.matches(f)]
