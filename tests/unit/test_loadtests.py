"""Load-test library: pure unit tests of the scenario/summary/plot code, and short
e2e runs of real locust scenarios against the session's Tierserve (no performance assertions)."""

from __future__ import annotations

import asyncio
import json

import httpx
import pytest

from loadtests.bench.overhead import BARE, RAYLLM, TIERSERVE, compare, markdown
from loadtests.bench.stats import median_of_passes, pass_figures, percentile
from loadtests.bench.stream_client import StreamTiming, chat_body, stream_chat
from loadtests.matrix import matrix_markdown, matrix_row
from loadtests.plots import plot_matrix, plot_tier_mix, plot_vs_concurrency
from loadtests.prompts import DEFAULT_PROMPTS, PromptBank
from loadtests.records import RequestRecord, parse_records
from loadtests.scenario import SCENARIOS, Scenario, require_loopback, scenario
from loadtests.summary import by_concurrency, summarize, tier_timeline

PNG_MAGIC = b"\x89PNG"


def rec(t: float, users: int = 1, status: int = 200, latency: float = 100.0, ttft: float | None = 10.0,
        tier: str | None = "fast", kind: str = "easy", tokens: int = 64) -> RequestRecord:
    return RequestRecord(t=t, users=users, status=status, latency_ms=latency, ttft_ms=ttft, tokens=tokens,
                         tier=tier, kind=kind, max_tokens=64, stream=True)


# -- summary math -------------------------------------------------------------
def test_percentile_interpolates_and_handles_edges():
    assert percentile([], 50) is None
    assert percentile([5.0], 99) == 5.0
    assert percentile([1, 2, 3, 4], 50) == 2.5
    assert percentile(list(range(101)), 95) == 95
    assert percentile([10, 0, 5], 100) == 10


def test_summarize_counts_rps_errors_and_tier_mix():
    records = [rec(0.0, latency=100), rec(1.0, latency=200, tier="reasoning", kind="hard"),
               rec(2.0, latency=300), rec(3.0, status=503, tier="none", ttft=None),
               rec(3.5, status=429, tier=None, ttft=None), rec(3.9, status=503, tier=None, ttft=None)]
    s = summarize(records, duration_s=4.0)
    assert s["requests"] == 6 and s["ok"] == 3
    assert s["rps"] == pytest.approx(0.75)
    assert s["tokens_per_s"] == pytest.approx(3 * 64 / 4)
    assert s["errors_by_status"] == {"429": 1, "503": 2}
    assert s["tier_mix"] == {"fast": {"requests": 2, "share": pytest.approx(2 / 3)},
                             "reasoning": {"requests": 1, "share": pytest.approx(1 / 3)}}
    assert s["latency_ms"]["p50"] == 200
    assert s["ttft_ms"]["p99"] == pytest.approx(10.0)
    assert s["hard_prompts_on_reasoning"] == 1.0


def test_summarize_duration_defaults_to_span_and_empty_is_zero():
    s = summarize([rec(10.0, latency=500), rec(11.0, latency=1000)])
    assert s["duration_s"] == pytest.approx(2.0)
    assert s["rps"] == pytest.approx(1.0)
    empty = summarize([])
    assert empty["requests"] == 0 and empty["rps"] == 0.0 and empty["latency_ms"]["p95"] is None


def test_by_concurrency_groups_by_user_count():
    records = [rec(0, users=1, latency=50), rec(1, users=1, latency=70),
               rec(2, users=4, latency=400), rec(2.1, users=4, status=500, ttft=None)]
    groups = by_concurrency(records)
    assert list(groups) == ["1", "4"]
    assert groups["1"]["latency_ms"]["p50"] == 60
    assert groups["4"]["errors"] == 1 and groups["4"]["requests"] == 2


def test_tier_timeline_bins_successes_per_tier():
    records = [rec(100.0), rec(101.0, tier="reasoning"), rec(106.0), rec(112.0),
               rec(113.0, status=503, tier="fast")]
    table = tier_timeline(records, bin_s=5)
    assert table["t"] == [0, 5, 10]
    assert table["fast"] == [1, 1, 1]
    assert table["reasoning"] == [1, 0, 0]


def test_records_roundtrip_as_jsonl():
    line = json.dumps(rec(1.5).__dict__)
    assert list(parse_records([line, ""])) == [rec(1.5)]


# -- scenarios, prompts, loopback ------------------------------------------------
def test_scenario_steps_constant_and_end():
    ramp = Scenario("r", steps=[1, 2, 4], step_s=10)
    assert [ramp.users_at(t) for t in (0, 9.9, 10, 25)] == [1, 1, 2, 4]
    assert ramp.users_at(30) is None and ramp.total_s == 30
    fixed = scenario("short", users=3, duration_s=5)
    assert fixed.users_at(4.9) == 3 and fixed.users_at(5) is None
    assert Scenario.from_json(fixed.to_json()) == fixed
    assert scenario("long").max_tokens == 256 and scenario("short").max_tokens == 64
    with pytest.raises(KeyError):
        scenario("nope")


def test_every_preset_is_bounded():
    for s in SCENARIOS.values():
        assert 0 < s.total_s <= 600, s.name


@pytest.mark.parametrize("url", ["http://127.0.0.1:8000", "http://localhost:1/", "http://[::1]:8000",
                                 "http://127.0.0.2:8000"])
def test_loopback_targets_are_accepted(url):
    assert require_loopback(url) == url.rstrip("/")


@pytest.mark.parametrize("url", ["http://10.0.0.1:8000", "https://api.openai.com", "http://example.com:8000",
                                 "http://0.0.0.0:8000", "not a url"])
def test_non_loopback_targets_are_refused(url):
    with pytest.raises(ValueError, match="non-loopback"):
        require_loopback(url)


def test_prompt_bank_kinds_repeat_and_errors(tmp_path):
    path = tmp_path / "p.jsonl"
    path.write_text('{"text": "hi", "kind": "easy"}\n\n{"text": "ab", "kind": "hard", "repeat": 3}\n')
    bank = PromptBank.load(path)
    assert bank.easy == ("hi",) and bank.hard == ("ab ab ab",)
    import random

    rng = random.Random(0)
    assert {bank.pick(rng, 1.0)[0] for _ in range(20)} == {"hard"}
    assert {bank.pick(rng, 0.0)[0] for _ in range(20)} == {"easy"}
    path.write_text('{"text": "x", "kind": "medium"}\n')
    with pytest.raises(ValueError, match="kind"):
        PromptBank.load(path)


def test_default_prompts_route_to_the_tier_their_kind_promises():
    """The shipped prompt file keeps both tiers busy: hard -> reasoning, easy -> fast."""
    from app.config.loader import load_config
    from app.protocol.internal import RouteRequest
    from app.routing.assemble import build_pipeline

    router = build_pipeline(load_config("local-cpu"))
    bank = PromptBank.load(DEFAULT_PROMPTS)

    async def tier_of(text: str) -> str:
        req = RouteRequest(request_id="t", endpoint="chat", model="auto", prompt_text=text)
        return (await router.decide(req)).tier

    assert {asyncio.run(tier_of(t)) for t in bank.easy} == {"fast"}
    assert {asyncio.run(tier_of(t)) for t in bank.hard} == {"reasoning"}


def test_default_prompts_fit_their_tier_with_a_long_answer(tiny_tokenizers):
    """Real token counts (the router only estimates): prompt + 256 tokens must fit the context."""
    from app.config.loader import load_config
    from tests.conftest import chat_prompt_tokens

    config = load_config("local-cpu")
    bank = PromptBank.load(DEFAULT_PROMPTS)
    for kind, texts in (("fast", bank.easy), ("reasoning", bank.hard)):
        limit = config.tier(kind).max_model_len
        for text in texts:
            used = chat_prompt_tokens(tiny_tokenizers[kind], [{"role": "user", "content": text}])
            assert used + scenario("long").max_tokens <= limit, (kind, text[:40], used)


# -- plots and tables -----------------------------------------------------------
def test_plots_write_pngs(tmp_path):
    records = [rec(i * 0.5, users=1 + i // 4, tier="fast" if i % 3 else "reasoning") for i in range(16)]
    summary = summarize(records)
    for path in (plot_vs_concurrency(summary, tmp_path / "a.png"), plot_tier_mix(records, tmp_path / "b.png"),
                 plot_tier_mix([], tmp_path / "empty.png")):
        assert path.read_bytes()[:4] == PNG_MAGIC
    rows = [matrix_row(p, u, summary) for p in ("short", "long") for u in (1, 2)]
    assert plot_matrix(rows, tmp_path / "m.png").read_bytes()[:4] == PNG_MAGIC


def test_matrix_markdown_has_one_row_per_cell():
    summary = summarize([rec(0, latency=120, ttft=12), rec(1, status=503, ttft=None)], duration_s=2)
    table = matrix_markdown([matrix_row("long", 8, summary), matrix_row("short", 1, summary)])
    lines = table.strip().splitlines()
    assert lines[0].startswith("| payload | users | req/s | p95 latency | p95 TTFT | errors |")
    assert lines[2] == "| long (256 tok) | 8 | 0.50 | 120 ms | 12 ms | 1 |"
    assert len(lines) == 4


# -- benchmark math and the streaming client -------------------------------------
def test_pass_figures_and_median():
    timings = [StreamTiming(ok=True, status=200, ttft_s=0.010, total_s=0.110, tokens=11),
               StreamTiming(ok=True, status=200, ttft_s=0.030, total_s=0.130, tokens=11),
               StreamTiming(ok=False, status=503)]
    fig = pass_figures(timings, wall_s=2.0)
    assert fig["errors"] == 1 and fig["req_per_s"] == 1.0 and fig["tok_per_s"] == 11.0
    assert fig["ttft_p50_ms"] == pytest.approx(20.0) and fig["itl_p50_ms"] == pytest.approx(10.0)
    med = median_of_passes([fig, {**fig, "req_per_s": 3.0}, {**fig, "req_per_s": 2.0}])
    assert med["req_per_s"] == 2.0 and med["errors"] == 3 and med["passes"] == 3


def test_compare_reports_ratios_and_targets():
    def fig(ttft: float, tok: float) -> dict:
        return {"ttft_p50_ms": ttft, "req_per_s": tok / 64, "tok_per_s": tok}

    results = {BARE: {"1": fig(10, 300), "32": fig(100, 3000)},
               TIERSERVE: {"1": fig(13, 290), "32": fig(150, 2500)},
               RAYLLM: {"1": fig(70, 270), "32": fig(400, 1200)}}
    cmp = compare(results)
    assert cmp["tierserve/bare"]["1"]["ttft_p50_delta_ms"] == pytest.approx(3)
    assert cmp["ray-serve-llm/bare"]["32"]["tok_per_s_ratio"] == pytest.approx(0.4)
    assert cmp["target_ttft_overhead_c1"]["met"] is True
    assert cmp["target_throughput_c32"]["met"] is False
    report = {"plan": {"prompt_words": 48, "max_tokens": 64, "passes": 3, "concurrencies": [1, 32]},
              "served_model": "tiny-fast", "machine": "test", "cold_start_s": {BARE: 20.0},
              "results": {k: {c: {**v, "ttft_p99_ms": None, "itl_p50_ms": 1.0} for c, v in by.items()}
                          for k, by in results.items()}, "comparison": cmp}
    text = markdown(report)
    assert "(target ≥ 90%): missed" in text and "(target ≤ 5 ms): met" in text


def test_stream_chat_times_tokens_from_sse():
    events = [{"choices": [{"delta": {"content": "a"}}]}, {"choices": [{"delta": {"content": "b"}}]},
              {"choices": [], "usage": {"completion_tokens": 2}}]
    body = "".join(f"data: {json.dumps(e)}\n\n" for e in events) + "data: [DONE]\n\n"

    def handler(request: httpx.Request) -> httpx.Response:
        assert json.loads(request.content)["stream"] is True
        return httpx.Response(200, text=body, headers={"x-tierserve-tier": "fast"})

    async def go() -> StreamTiming:
        async with httpx.AsyncClient(transport=httpx.MockTransport(handler)) as client:
            return await stream_chat(client, "http://127.0.0.1/v1/chat/completions",
                                     chat_body("m", "hi", 2))

    timing = asyncio.run(go())
    assert timing.ok and timing.tokens == 2 and timing.tier == "fast" and len(timing.gaps_s) == 1
    assert 0 < timing.ttft_s <= timing.total_s


def test_cli_registers_loadtest_and_bench():
    from tooling.cli import build_parser

    parser = build_parser()
    assert parser.parse_args(["loadtest", "ramp"]).func.__name__ == "cmd_loadtest"
    assert parser.parse_args(["bench", "overhead"]).func.__name__ == "cmd_bench_overhead"
    assert parser.parse_args(["bench", "router"]).func.__name__ == "cmd_bench_router"
    assert parser.parse_args(["bench", "cold-start"]).func.__name__ == "cmd_bench_cold_start"
    from tooling.cli import main

    assert main(["loadtest", "--base-url", "http://192.168.1.1:8000"]) == 2
