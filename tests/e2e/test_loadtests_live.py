"""Short runs of real locust scenarios against the session's Tierserve (no performance
assertions); the load-test library's pure logic is tested in tests/unit/test_loadtests.py."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from loadtests.scenario import scenario

PNG_MAGIC = b"\x89PNG"


def _locust_rows(path: Path) -> list[dict]:
    with path.open() as f:
        return list(csv.DictReader(f))


@pytest.mark.e2e
def test_loadtest_cli_mixed_streaming_writes_results(tierserve_stack, tmp_path):
    from tooling.cli import main

    rc = main(["loadtest", "mixed", "--base-url", tierserve_stack.base_url, "--duration", "8",
               "--users", "2", "--hard-share", "0.5", "--max-tokens", "16", "--out", str(tmp_path)])
    assert rc == 0
    (out,) = tmp_path.iterdir()
    for name in ("locust_stats.csv", "locust_stats_history.csv", "locust_failures.csv",
                 "locust_report.html", "requests.jsonl", "summary.json",
                 "latency_vs_concurrency.png", "tier_mix.png"):
        assert (out / name).stat().st_size > 0, name
    summary = json.loads((out / "summary.json").read_text())
    assert summary["ok"] > 0 and summary["errors_by_status"] == {}
    assert set(summary["tier_mix"]) == {"fast", "reasoning"}
    assert summary["ttft_ms"]["p50"] is not None and summary["by_concurrency"]
    types = {(r["Type"], r["Name"]) for r in _locust_rows(out / "locust_stats.csv")}
    assert ("TTFT", "fast") in types and ("TOKENS_PER_S", "fast") in types and ("TIER", "reasoning") in types


@pytest.mark.e2e
def test_session_scenario_keeps_conversations_on_one_tier(tierserve_stack, tmp_path):
    from loadtests.records import read_records
    from loadtests.runner import run_scenario

    chosen = scenario("sessions", users=2, duration_s=6, max_tokens=8, stream=False, session_turns=3,
                      hard_share=0.0)
    summary = run_scenario(chosen, tierserve_stack.base_url, tmp_path)
    assert summary["ok"] > 0 and summary["errors_by_status"] == {}
    records = read_records(tmp_path / "requests.jsonl")
    assert all(r.ttft_ms is None and not r.stream for r in records)
    # A conversation may move up to reasoning, never back down to fast (session affinity).
    by_session: dict[str, list] = {}
    for r in sorted(records, key=lambda r: r.t):
        by_session.setdefault(r.session_id, []).append(r.tier)
    assert None not in by_session and by_session
    for session, tiers in by_session.items():
        first_strong = tiers.index("reasoning") if "reasoning" in tiers else len(tiers)
        assert set(tiers[first_strong:]) <= {"reasoning"}, (session, tiers)


@pytest.mark.e2e
def test_matrix_sweep_writes_table_and_plot(tierserve_stack, tmp_path):
    from loadtests.matrix import run_matrix

    base = scenario("short", duration_s=3, stream=True)
    rows = run_matrix(base, tierserve_stack.base_url, tmp_path, users=[1, 2], payloads=["short", "long"])
    expected = [("short", 1), ("short", 2), ("long", 1), ("long", 2)]
    assert [(r["payload"], r["users"]) for r in rows] == expected
    assert all(r["rps"] > 0 and r["errors"] == 0 for r in rows)
    assert (tmp_path / "matrix.png").read_bytes()[:4] == PNG_MAGIC
    assert len((tmp_path / "matrix.md").read_text().strip().splitlines()) == 2 + len(rows)
    assert json.loads((tmp_path / "matrix.json").read_text()) == rows
