"""RoutePipeline decisions: overrides, forced rules, affinity and determinism."""

from __future__ import annotations

import asyncio

from app.routing.affinity import MemoryAffinityStore
from app.routing.assemble import build_pipeline
from app.routing.learned import LearnedScorer
from app.routing.pipeline import RoutePipeline
from tests.route_helpers import FixedScorer, request, two_tier_config
from tests.unit.test_route_learned import ARTIFACT

FORCED = [{"name": "force-proof", "tier": "reasoning", "force": True,
           "match": {"patterns": [r"\bprove\b"]}},
          {"name": "soft-greeting", "tier": "fast", "match": {"patterns": [r"^hello"]}}]


def decide(router: RoutePipeline, req):
    return asyncio.run(router.decide(req))


def test_model_name_pins_the_tier_over_score() -> None:
    router = build_pipeline(two_tier_config(), scorer=FixedScorer(0.99))
    d = decide(router, request(model="tiny-fast"))
    assert (d.tier, d.reason) == ("fast", "model")


def test_tier_header_honoured_only_when_allowed() -> None:
    req = request(tier_header="reasoning")
    d = decide(build_pipeline(two_tier_config(), scorer=FixedScorer(0.0)), req)
    assert (d.tier, d.reason) == ("reasoning", "header")
    d = decide(build_pipeline(two_tier_config(allow_tier_header=False), scorer=FixedScorer(0.0)), req)
    assert (d.tier, d.reason) == ("fast", "score")


def test_forced_rule_beats_the_score_and_says_so() -> None:
    router = build_pipeline(two_tier_config(rules=FORCED), scorer=FixedScorer(0.0))
    d = decide(router, request("Please prove that sqrt(2) is irrational."))
    assert (d.tier, d.reason, d.matched_rules) == ("reasoning", "rule:force-proof", ["force-proof"])
    assert d.score == 0.0  # the score is still reported


def test_score_against_threshold() -> None:
    cfg = two_tier_config(threshold=0.3)
    assert decide(build_pipeline(cfg, scorer=FixedScorer(0.3)), request()).tier == "reasoning"
    assert decide(build_pipeline(cfg, scorer=FixedScorer(0.29)), request()).tier == "fast"


def test_affinity_never_downgrades_but_upgrades() -> None:
    scorer, store = FixedScorer(0.9), MemoryAffinityStore(60, 100)
    router = build_pipeline(two_tier_config(), scorer=scorer, store=store)
    assert decide(router, request(session_id="c1")).tier == "reasoning"
    scorer.value = 0.1
    d = decide(router, request(session_id="c1"))
    assert (d.tier, d.reason, d.affinity_hit) == ("reasoning", "affinity", True)
    # A session that started on fast moves up when a harder turn comes.
    assert decide(router, request(session_id="c2")).tier == "fast"
    scorer.value = 0.9
    d = decide(router, request(session_id="c2"))
    assert (d.tier, d.reason) == ("reasoning", "score")


def test_pinned_request_ignores_affinity() -> None:
    store = MemoryAffinityStore(60, 100)
    router = build_pipeline(two_tier_config(), scorer=FixedScorer(0.9), store=store)
    decide(router, request(session_id="c3"))
    d = decide(router, request(session_id="c3", model="tiny-fast"))
    assert (d.tier, d.reason, d.affinity_hit) == ("fast", "model", False)


def test_same_request_same_decision_with_learned_scorer() -> None:
    scorer = LearnedScorer.load(ARTIFACT)
    prompt = "A farmer has 12 cows and buys 3 times as many. How many cows does he have in total?"
    decisions = [decide(build_pipeline(two_tier_config(), scorer=scorer), request(prompt)) for _ in range(3)]
    untimed = [d.model_copy(update={"decision_ms": 0.0, "contributions": [
        c.model_copy(update={"ms": 0.0}) for c in d.contributions]}) for d in decisions]
    dumped = {d.model_dump_json() for d in untimed}
    assert len(dumped) == 1
    assert decisions[0].reason == "score" and 0.0 < decisions[0].score < 1.0
