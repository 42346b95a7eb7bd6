"""`tierserve bench replica-router`: the multi-turn workload, its per-turn figures, the two-replica
profile and the usage figures the stream client reads (logic only, no Ray, no engine)."""

from __future__ import annotations

import asyncio
import json
import shutil

import httpx
import pytest

from app.config.loader import DEFAULT_CONFIG_DIR, load_config
from loadtests.bench.replica_router import (
    ReplicaRouterPlan,
    TurnResult,
    check_fits,
    conversation,
    replica_counters,
    same_replica_as_previous_turn,
    shared_prefix_tokens,
    table,
    turn_figures,
    two_replica_profile,
)
from loadtests.bench.stream_client import chat_body, stream_chat


def _chars(messages: list[dict[str, str]]) -> list[int]:
    """A stand-in tokenizer: one token per character of the rendered chat."""
    return [ord(c) for m in messages for c in f"<{m['role']}>{m['content']}"]


def test_each_turn_resends_the_whole_history_and_adds_one_user_message() -> None:
    plan = ReplicaRouterPlan(turns=4, system_words=10, user_words=5, reply_words=3)
    turns = conversation(plan, 0, 1)
    assert len(turns) == 4
    assert turns[0][0]["role"] == "system" and [m["role"] for m in turns[0]] == ["system", "user"]
    for earlier, later in zip(turns, turns[1:], strict=False):
        assert later[:len(earlier)] == earlier  # the history is a prefix of the next turn
        assert [m["role"] for m in later[len(earlier):]] == ["assistant", "user"]
    assert conversation(plan, 0, 1) == turns  # same seed, same conversation


def test_sessions_share_only_the_system_prompt() -> None:
    plan = ReplicaRouterPlan(turns=2, system_words=10, user_words=5)
    a, b, c = conversation(plan, 0, 0), conversation(plan, 0, 1), conversation(plan, 1, 0)
    assert a[0][0] == b[0][0] == c[0][0]
    assert len({a[0][1]["content"], b[0][1]["content"], c[0][1]["content"]}) == 3
    shared = shared_prefix_tokens([a[0], b[0], c[0]], _chars)
    # the most any two share: a and b (round 0) also share their tags' "Session 0."
    assert shared == len(_chars([a[0][0]])) + len("<user>Session 0.")
    assert shared_prefix_tokens([a[0], c[0]], _chars) == len(_chars([a[0][0]])) + len("<user>Session ")
    no_system = ReplicaRouterPlan(turns=2, system_words=0)
    assert [m["role"] for m in conversation(no_system, 0, 0)[0]] == ["user"]


def test_turn_figures_split_turn_one_from_later_turns_and_count_history_hits() -> None:
    shared = 300
    results = [
        TurnResult(0, 0, 1, True, 200, ttft_s=0.100, prompt_tokens=480, cached_tokens=256),
        TurnResult(0, 1, 1, True, 200, ttft_s=0.300, prompt_tokens=480, cached_tokens=0),
        # found its own history (beyond the shared prefix), then only the shared prefix
        TurnResult(0, 0, 2, True, 200, ttft_s=0.020, prompt_tokens=680, cached_tokens=384),
        TurnResult(0, 1, 2, True, 200, ttft_s=0.040, prompt_tokens=680, cached_tokens=256),
        TurnResult(0, 0, 3, False, 503),
    ]
    figs = turn_figures(results, shared)
    assert figs["turn_1"] == {"n": 2, "errors": 0, "ttft_p50_ms": 200.0, "ttft_p95_ms": 290.0}
    assert figs["turns_2_plus"] == {"n": 3, "errors": 1, "ttft_p50_ms": 30.0, "ttft_p95_ms": 39.0}
    assert figs["history_hit_share"] == 0.5
    assert figs["same_replica_share"] == 0.5
    assert figs["cached_token_share"] == round(640 / 1360, 3)
    no_cache_figures = [TurnResult(0, 0, 2, True, 200, ttft_s=0.01, prompt_tokens=10)]
    assert turn_figures(no_cache_figures, shared)["history_hit_share"] is None


def test_a_turn_is_on_its_previous_turns_replica_when_it_cached_more_than_the_turn_before_that(
        ) -> None:
    shared = 300  # each turn adds ~200 tokens, more than a 128-token block
    prompts = {1: 480, 2: 680, 3: 880, 4: 1080}

    def turn(n: int, cached: int | None, ok: bool = True) -> TurnResult:
        return TurnResult(0, 0, n, ok, 200 if ok else 503, ttft_s=0.01, prompt_tokens=prompts[n],
                          cached_tokens=cached)

    results = [turn(1, 0),
               turn(2, 384),  # > shared: its replica served turn 1
               turn(3, 384),  # only turn 1's prompt (480 is turn 3's "k-2"): not turn 2's replica
               turn(4, 768)]  # > 680 (turn 2's prompt): turn 3's replica
    assert same_replica_as_previous_turn(results, shared) == [True, False, True]
    # turn 3's own history hit still counts: it found turn 1 there
    assert turn_figures(results, shared)["history_hit_share"] == 1.0
    # a failed turn k-2 leaves turn k unjudged; a turn without cache figures is skipped
    gap = [turn(1, 0), turn(2, 384, ok=False), turn(3, 640), turn(4, 768)]
    assert same_replica_as_previous_turn(gap, shared) == [True]
    assert same_replica_as_previous_turn([turn(1, 0), turn(2, None)], shared) == []


def test_replica_counters_are_what_grew_between_scrapes_and_table_shows_the_split() -> None:
    before = {"r1": {"requests": 1.0, "prefix_queried_tokens": 10.0, "prefix_hit_tokens": 0.0}}
    after = {"r1": {"requests": 9.0, "prefix_queried_tokens": 1010.0, "prefix_hit_tokens": 500.0},
             "r2": {"requests": 4.0, "prefix_queried_tokens": 1000.0, "prefix_hit_tokens": 100.0}}
    grew = replica_counters(before, after)
    assert grew == {"r1": {"requests": 8.0, "prefix_queried_tokens": 1000.0, "prefix_hit_tokens": 500.0},
                    "r2": {"requests": 4.0, "prefix_queried_tokens": 1000.0, "prefix_hit_tokens": 100.0}}
    figs = turn_figures([TurnResult(0, 0, 1, True, 200, ttft_s=0.1)], 0)
    text = table({"runs": [{"router": "power_of_two", **figs, "per_replica": grew}]})
    assert "| power_of_two |" in text and "| 8 / 4 |" in text and "| 0.3 |" in text


def test_the_bench_profile_runs_the_tier_at_two_replicas_with_the_router_and_suspends_the_rest(
        tmp_path) -> None:
    configs = tmp_path / "configs"
    shutil.copytree(DEFAULT_CONFIG_DIR, configs)
    two_replica_profile(configs, ReplicaRouterPlan(), "prefix_cache_affinity")
    config = load_config("local-cpu", root=configs)
    fast = config.tier("fast")
    assert (fast.autoscaling.min_replicas, fast.autoscaling.max_replicas) == (2, 2)
    assert fast.replica_router == "prefix_cache_affinity"
    assert fast.engine_kwargs["enable_prefix_caching"] is True
    assert fast.engine_kwargs["enable_prompt_tokens_details"] is True
    assert [t.name for t in config.tiers if t.autoscaling.suspended] == ["reasoning"]


def test_a_conversation_longer_than_the_context_is_refused_before_anything_starts() -> None:
    plan = ReplicaRouterPlan(turns=3, system_words=10, user_words=5, reply_words=3, rounds=1, sessions=2)
    longest = max(len(_chars(conversation(plan, 0, s)[-1])) for s in range(2))
    check_fits(plan, _chars, longest + plan.max_tokens)
    with pytest.raises(ValueError, match="max_model_len"):
        check_fits(plan, _chars, longest + plan.max_tokens - 1)


def test_stream_chat_reads_prompt_and_cached_tokens_from_usage() -> None:
    events = [{"choices": [{"delta": {"content": "a"}}]},
              {"choices": [], "usage": {"completion_tokens": 1, "prompt_tokens": 480,
                                        "prompt_tokens_details": {"cached_tokens": 384}}}]
    body = "".join(f"data: {json.dumps(e)}\n\n" for e in events) + "data: [DONE]\n\n"

    async def go(text: str):
        transport = httpx.MockTransport(lambda request: httpx.Response(200, text=text))
        async with httpx.AsyncClient(transport=transport) as client:
            return await stream_chat(client, "http://127.0.0.1/v1/chat/completions", chat_body("m", "hi", 1))

    timing = asyncio.run(go(body))
    assert (timing.prompt_tokens, timing.cached_tokens) == (480, 384)
    events[1]["usage"]["prompt_tokens_details"] = None  # the engine gives no cache figures
    timing = asyncio.run(go("".join(f"data: {json.dumps(e)}\n\n" for e in events)))
    assert (timing.prompt_tokens, timing.cached_tokens) == (480, None)


def test_the_cli_registers_the_bench_and_refuses_an_unknown_router_before_starting_anything(
        capsys) -> None:
    from tooling.cli import build_parser, main

    args = build_parser().parse_args(["bench", "replica-router", "--sessions", "2"])
    assert args.func.__name__ == "cmd_bench_replica_router" and args.sessions == 2
    assert main(["bench", "replica-router", "--routers", "power_of_two,round_robin"]) == 2
    assert "round_robin" in capsys.readouterr().out
