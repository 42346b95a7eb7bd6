"""Each routing plugin on its own, the registry, and the pipeline over three tiers."""

from __future__ import annotations

import asyncio
import shutil
from pathlib import Path
from typing import Any

import pytest
import yaml

from app.config.loader import REPO_ROOT, ConfigError, load_config
from app.config.schema import TierserveConfig
from app.protocol.internal import RouteRequest
from app.routing.affinity import MemoryAffinityStore
from app.routing.assemble import build_pipeline, check_plugins
from app.routing.features import RequestFeatures
from app.routing.learned import LearnedScorer
from app.routing.plugin import Context, NoParams, Setup
from app.routing.plugins.filters import AffinityFilter, ContextFitFilter, HealthFilter
from app.routing.plugins.picker import LadderPicker
from app.routing.plugins.pins import EffortParams, HeaderPin, ModelPin, ReasoningEffortPin, RulesPin
from app.routing.plugins.plan import FallbackPlan
from app.routing.plugins.scorers import LearnedParams, LearnedScore
from app.routing.plugins.team import TeamParams, TeamScore
from app.routing.registry import BUILTIN, UnknownPlugin, plugin_class
from tests.route_helpers import FixedScorer, request, two_tier_config
from tests.unit.test_route_learned import ARTIFACT


def three_tier_config(**routing: Any) -> TierserveConfig:
    def tier(name: str, cost: float, max_len: int = 4096) -> dict[str, Any]:
        return {"name": name, "served_model_name": f"tiny-{name}", "model_source": "m",
                "max_model_len": max_len, "cost_per_1k_tokens": cost}
    return TierserveConfig.model_validate({
        "profile": "test",
        "tiers": [tier("fast", 0.1, 1024), tier("medium", 0.3, 2048), tier("reasoning", 1.0)],
        "routing": {"default_tier": "fast", "ladder": ["fast", "medium", "reasoning"],
                    "thresholds": [0.3, 0.7], **routing},
    })


def ctx(req: RouteRequest | None = None, unavailable: frozenset[str] = frozenset()) -> Context:
    req = req or request()
    return Context(req, RequestFeatures.of(req), unavailable)


def run(coro: Any) -> Any:
    return asyncio.run(coro)


# -- pins ----------------------------------------------------------------------------
def test_model_pin_by_tier_or_served_name() -> None:
    pin = ModelPin(Setup(two_tier_config()))
    assert pin.pin(ctx(request(model="tiny-reasoning"))).tier == "reasoning"
    assert pin.pin(ctx(request(model="fast"))).reason == "model"
    assert pin.pin(ctx(request(model="auto"))) is None


def test_header_pin_only_when_allowed() -> None:
    req = request(tier_header="tiny-reasoning")
    assert HeaderPin(Setup(two_tier_config())).pin(ctx(req)).tier == "reasoning"
    assert HeaderPin(Setup(two_tier_config(allow_tier_header=False))).pin(ctx(req)) is None


def test_reasoning_effort_pin_maps_effort_to_tier() -> None:
    setup = Setup(three_tier_config(), EffortParams(tiers={"medium": "medium", "high": "reasoning"}))
    pin = ReasoningEffortPin(setup)
    assert pin.pin(ctx(request(reasoning_effort="high"))).tier == "reasoning"
    assert pin.pin(ctx(request(reasoning_effort="medium"))).reason == "effort:medium"
    assert pin.pin(ctx(request(reasoning_effort="low"))) is None
    with pytest.raises(ValueError, match="unknown tier"):
        ReasoningEffortPin(Setup(three_tier_config(), EffortParams(tiers={"high": "huge"})))


def test_rules_pin_forced_is_hard_first_match_is_soft() -> None:
    rules = [{"name": "greeting", "tier": "fast", "match": {"patterns": ["^hello"]}},
             {"name": "proof", "tier": "reasoning", "force": True, "match": {"patterns": [r"\bprove\b"]}}]
    pin = RulesPin(Setup(two_tier_config(rules=rules)))
    hard = pin.pin(ctx(request("hello, please prove it")))
    assert (hard.tier, hard.reason, hard.hard, hard.matched) == (
        "reasoning", "rule:proof", True, ("greeting", "proof"))
    soft = pin.pin(ctx(request("hello there")))
    assert (soft.tier, soft.hard) == ("fast", False)
    assert pin.pin(ctx(request("nothing to see"))) is None


# -- scorers ---------------------------------------------------------------------------
def test_learned_scorer_loads_the_artifact_and_reports_its_version() -> None:
    plugin = LearnedScore(Setup(two_tier_config(), LearnedParams(
        artifact=str(Path(ARTIFACT).relative_to(REPO_ROOT)))))
    c = ctx(request("Prove that the square root of two is irrational, step by step."))
    assert plugin.score(c) == pytest.approx(LearnedScorer.load(ARTIFACT).score(c.features))
    assert plugin.version is not None and plugin.version.startswith(f"{Path(ARTIFACT).name}@")
    assert len(plugin.version.split("@")[1]) == 12


def test_embedding_scorer_is_the_same_plugin() -> None:
    pytest.importorskip("wordllama")
    plugin = LearnedScore(Setup(two_tier_config(), LearnedParams(
        artifact="app/routing/artifacts/complexity_embed.json")))
    score = plugin.score(ctx(request("What is 17 * 23? Think step by step.")))
    assert score is not None and 0.0 <= score <= 1.0
    assert plugin.version is not None and plugin.version.startswith("complexity_embed.json@")


def test_team_scorer_scores_listed_teams_and_abstains_otherwise() -> None:
    plugin = TeamScore(Setup(two_tier_config(), TeamParams(teams={"research": 0.9, "alice": 0.1})))
    assert plugin.score(ctx(request(team="research"))) == 0.9
    assert plugin.score(ctx(request(user="alice"))) == 0.1
    assert plugin.score(ctx(request(user="bob"))) is None


# -- picker ------------------------------------------------------------------------------
def test_ladder_picker_one_threshold_per_boundary() -> None:
    picker = LadderPicker(Setup(three_tier_config()))
    c = ctx()
    assert [picker.pick(c, s) for s in (0.0, 0.29, 0.3, 0.69, 0.7, 1.0)] == [
        "fast", "fast", "medium", "medium", "reasoning", "reasoning"]


# -- filters ------------------------------------------------------------------------------
def test_health_filter_drops_unavailable_tiers() -> None:
    f = HealthFilter(Setup(three_tier_config()))
    assert run(f.keep(ctx(unavailable=frozenset({"medium"})), "medium",
                      ["fast", "medium", "reasoning"])) == ["fast", "reasoning"]


def test_context_fit_filter_drops_tiers_too_small() -> None:
    f = ContextFitFilter(Setup(three_tier_config()))
    prompt = "word " * 1200  # ~1500 estimated tokens: over fast's 1024, within medium's 2048
    assert run(f.keep(ctx(request(prompt, max_tokens=100)), "fast",
                      ["fast", "medium", "reasoning"])) == ["medium", "reasoning"]


def test_affinity_filter_keeps_sessions_from_moving_down_and_remembers() -> None:
    store = MemoryAffinityStore(60, 10)
    f = AffinityFilter(Setup(three_tier_config(), store=store))
    c = ctx(request(session_id="s1"))
    assert run(f.keep(c, "fast", ["fast", "medium", "reasoning"])) == ["fast", "medium", "reasoning"]
    run(f.chosen(c, "medium"))
    c = ctx(request(session_id="s1"))
    assert run(f.keep(c, "fast", ["fast", "medium", "reasoning"])) == ["medium", "reasoning"]
    assert c.affinity_hit


# -- plan ------------------------------------------------------------------------------
def test_fallback_plan_dearer_nearest_first_then_cheaper() -> None:
    plan = FallbackPlan(Setup(three_tier_config(fallback={"max_attempts": 3})))
    assert plan.fallbacks(ctx(), "fast") == ["medium", "reasoning"]
    assert plan.fallbacks(ctx(), "medium") == ["reasoning", "fast"]
    assert plan.fallbacks(ctx(unavailable=frozenset({"reasoning"})), "medium") == ["fast", "reasoning"]
    assert plan.fallbacks(ctx(unavailable=frozenset({"medium", "reasoning"})), "fast") == [
        "medium", "reasoning"]  # all down (or a stale view): still a plan
    short = FallbackPlan(Setup(three_tier_config()))  # max_attempts 2: one fallback
    assert short.fallbacks(ctx(), "fast") == ["medium"]


# -- registry ----------------------------------------------------------------------------------
def test_registry_maps_names_and_import_paths_to_classes_of_the_right_kind() -> None:
    assert plugin_class("learned", "scorers") is LearnedScore
    assert plugin_class("app.routing.plugins.team:TeamScore", "scorers") is TeamScore
    with pytest.raises(UnknownPlugin, match="unknown scorer plugin 'nope'"):
        plugin_class("nope", "scorers")
    with pytest.raises(UnknownPlugin, match="not a scorer plugin"):
        plugin_class("health", "scorers")
    assert all(p.Params is NoParams or issubclass(p.Params, NoParams) for p in BUILTIN.values())


@pytest.fixture
def config_copy(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    shutil.copytree(REPO_ROOT / "configs", tmp_path / "configs")
    monkeypatch.setenv("TIERSERVE_CONFIG_DIR", str(tmp_path / "configs"))
    return tmp_path / "configs"


def test_unknown_plugin_name_fails_with_file_and_field(config_copy: Path) -> None:
    path = config_copy / "routing.yaml"
    data = yaml.safe_load(path.read_text())
    data["plugins"] = {"scorers": ["learned", {"name": "no-such-scorer"}]}
    path.write_text(yaml.safe_dump(data))
    config = load_config("local-cpu", root=config_copy)
    with pytest.raises(ConfigError) as err:
        check_plugins(config)
    field = "routing.plugins.scorers[1].name"
    assert f"{path}: {field}: unknown scorer plugin 'no-such-scorer'" in str(err.value)
    with pytest.raises(ConfigError, match="no-such-scorer"):
        build_pipeline(config)


def test_bad_plugin_params_fail_with_file_and_field(config_copy: Path) -> None:
    path = config_copy / "profiles" / "local-cpu.yaml"
    data = yaml.safe_load(path.read_text())
    data["routing"]["plugins"] = {"scorers": [{"name": "team", "params": {"teems": {}}}]}
    path.write_text(yaml.safe_dump(data))
    with pytest.raises(ConfigError, match=rf"{path}: routing.plugins.scorers\[0\].params.teems"):
        check_plugins(load_config("local-cpu", root=config_copy))


# -- the pipeline over three tiers --------------------------------------------------------
def test_three_tier_pipeline_spreads_scores_and_explains_each_plugin() -> None:
    scorer = FixedScorer(0.5)
    pipeline = build_pipeline(three_tier_config(), scorer=scorer)
    tiers = []
    for value in (0.1, 0.5, 0.9):
        scorer.value = value
        d = run(pipeline.decide(request()))
        tiers.append(d.tier)
        assert d.reason == "score" and d.thresholds == [0.3, 0.7] and d.threshold is None
    assert tiers == ["fast", "medium", "reasoning"]
    assert [c.plugin for c in d.contributions] == [
        "features", "model", "header", "rules", "learned", "ladder", "health", "context-fit",
        "affinity", "fallback"]
    assert all(c.ms >= 0 for c in d.contributions) and "learned=0.9000/" in d.explain()


def test_weighted_scorers_combine_and_abstention_is_skipped() -> None:
    team = {"name": "team", "weight": 3, "params": {"teams": {"research": 1.0}}}
    config = three_tier_config(plugins={"scorers": ["learned", team]})
    pipeline = build_pipeline(config, scorer=FixedScorer(0.2))
    assert run(pipeline.decide(request())).score == pytest.approx(0.2)  # team abstains
    d = run(pipeline.decide(request(team="research")))
    assert d.score == pytest.approx((0.2 + 3 * 1.0) / 4) and d.tier == "reasoning"


def test_unhealthy_tier_moves_to_the_next_dearer_one() -> None:
    pipeline = build_pipeline(three_tier_config(), scorer=FixedScorer(0.1))
    d = run(pipeline.decide(request(), frozenset({"fast"})))
    assert (d.tier, d.reason, d.fallbacks) == ("medium", "fallback:unhealthy", ["reasoning"])


def test_two_tier_profile_default_pipeline_is_todays_cascade() -> None:
    pipeline = build_pipeline(load_config("local-cpu"))
    assert [n.name for n in pipeline.pins] == ["model", "header", "rules"]
    assert [n.name for n in pipeline.scorers] == ["learned"]
    assert [n.name for n in pipeline.filters] == ["health", "context-fit", "affinity"]
    d = run(pipeline.decide(request("hi")))
    assert (d.tier, d.reason) == ("fast", "rule:short-prompt")
    # The shipped scorer: the embedding one with objective gain (configs/routing.yaml).
    assert d.scorer_version and d.scorer_version.startswith("complexity_embed_gain.json@")
