"""Rules and request features: matching semantics, including the fast pattern path."""

from __future__ import annotations

import re

import pytest

from app.config.schema import RoutingRule
from app.protocol.internal import RouteRequest
from app.routing.features import RequestFeatures, estimate_tokens, looks_like_code
from app.routing.rules import CompiledRule, TextPattern


@pytest.mark.parametrize("pattern", [r"\bprove\b", r"step[- ]by[- ]step", r"\bproof\b|lemma",
                                     r"\d{3,}", r"\bQED\b", r"\bderiv\w*"])
@pytest.mark.parametrize("text", ["Please PROVE it", "approve this", "Step-by-Step please",
                                  "a proofread", "call 911 now", "qed.", "Derivatives!", ""])
def test_text_pattern_equals_ignorecase_search(pattern, text):
    expected = re.search(pattern, text, re.I) is not None
    assert TextPattern(pattern).search(text, text.lower()) is expected


def _features(text: str, **kw) -> RequestFeatures:
    return RequestFeatures.of(RouteRequest(request_id="r", endpoint="chat", model="auto",
                                           prompt_text=text, **kw))


def test_rule_needs_every_condition():
    rule = CompiledRule.compile(RoutingRule.model_validate({
        "name": "long-proof", "tier": "reasoning",
        "match": {"patterns": [r"\bprove\b"], "min_prompt_tokens": 10}}))
    assert not rule.matches(_features("prove it"))  # too short
    assert rule.matches(_features("please prove that this statement holds for every n"))
    assert not rule.matches(_features("please approve that this statement holds for every n"))


def test_reasoning_effort_and_turns():
    rule = CompiledRule.compile(RoutingRule.model_validate({
        "name": "effort", "tier": "reasoning", "match": {"reasoning_effort": ["high"], "min_turns": 2}}))
    assert rule.matches(_features("x", reasoning_effort="high", turns=2))
    assert not rule.matches(_features("x", reasoning_effort="low", turns=2))
    assert not rule.matches(_features("x", reasoning_effort="high", turns=1))


@pytest.mark.parametrize("text, code", [
    ("```python\nprint(1)\n```", True), ("def f(x):\n    return x", True),
    ("int main() {\n  return 0;\n}", True), ("Hello, how are you?", False),
    ("I like classes; and more", False)])
def test_looks_like_code(text, code):
    assert looks_like_code(text) is code


def test_token_estimate_is_about_four_bytes():
    assert estimate_tokens("") == 0
    assert estimate_tokens("abcd" * 100) == 100
