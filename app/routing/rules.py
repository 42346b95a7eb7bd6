"""Deterministic YAML rules: each names a tier and the conditions that send a request there."""

from __future__ import annotations

import re
from dataclasses import dataclass

from app.config.schema import RoutingRule
from app.routing.features import RequestFeatures


class TextPattern:
    """A case-insensitive regex, made fast for the common all-lowercase pattern.

    Python's `re` scans slowly with IGNORECASE or a leading `\\b` (about 2 ms over a
    4k-token prompt); a lowercase pattern runs case-sensitively on the lowercased text,
    behind a prefilter without the leading `\\b` that has a literal prefix to skip to.
    """

    def __init__(self, pattern: str) -> None:
        self.lowercase = pattern == pattern.lower()
        if self.lowercase:
            self._full = re.compile(pattern)
            self._prefilter = re.compile(pattern.removeprefix("\\b"))
        else:
            self._full = self._prefilter = re.compile(pattern, re.I)

    def search(self, text: str, lower: str) -> bool:
        subject = lower if self.lowercase else text
        return self._prefilter.search(subject) is not None and (
            self._prefilter is self._full or self._full.search(subject) is not None)


@dataclass(frozen=True)
class CompiledRule:
    rule: RoutingRule
    patterns: tuple[TextPattern, ...]

    @classmethod
    def compile(cls, rule: RoutingRule) -> CompiledRule:
        return cls(rule, tuple(TextPattern(p) for p in rule.match.patterns))

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
            not self.patterns or any(p.search(f.text, f.lower) for p in self.patterns),
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
