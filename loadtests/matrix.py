"""`tierserve loadtest matrix`: concurrency × payload size → a Markdown table and a plot."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from loadtests.plots import plot_matrix
from loadtests.runner import run_scenario
from loadtests.scenario import LONG_TOKENS, SHORT_TOKENS, Scenario

PAYLOADS = {"short": SHORT_TOKENS, "long": LONG_TOKENS}


def matrix_row(payload: str, users: int, summary: dict[str, Any]) -> dict[str, Any]:
    return {"payload": payload, "users": users, "rps": summary["rps"],
            "latency_p95_ms": summary["latency_ms"]["p95"], "ttft_p95_ms": summary["ttft_ms"]["p95"],
            "errors": sum(summary["errors_by_status"].values()), "tier_mix": summary["tier_mix"]}


def matrix_markdown(rows: Sequence[dict[str, Any]]) -> str:
    def ms(v: float | None) -> str:
        return "–" if v is None else f"{v:.0f} ms"

    lines = ["| payload | users | req/s | p95 latency | p95 TTFT | errors |", "|---|---|---|---|---|---|"]
    for r in sorted(rows, key=lambda r: (r["payload"], r["users"])):
        lines.append(f"| {r['payload']} ({PAYLOADS.get(r['payload'], '?')} tok) | {r['users']} | "
                     f"{r['rps']:.2f} | {ms(r['latency_p95_ms'])} | {ms(r['ttft_p95_ms'])} | {r['errors']} |")
    return "\n".join(lines) + "\n"


def run_matrix(base: Scenario, base_url: str, out: Path, users: Sequence[int],
               payloads: Sequence[str], prompts: Path | None = None) -> list[dict[str, Any]]:
    rows = []
    for payload in payloads:
        for n in users:
            cell = out / f"{payload}-c{n}"
            cell.mkdir()
            scenario = replace(base, name=f"matrix-{payload}-c{n}", users=n, steps=[],
                               max_tokens=PAYLOADS[payload], rate_rps=None)
            summary = run_scenario(scenario, base_url, cell, prompts)
            rows.append(matrix_row(payload, n, summary))
            print(f"  {payload:<5} users {n:<3} {rows[-1]['rps']:6.2f} req/s  "
                  f"p95 {rows[-1]['latency_p95_ms'] or 0:7.0f} ms  errors {rows[-1]['errors']}", flush=True)
    (out / "matrix.json").write_text(json.dumps(rows, indent=2))
    (out / "matrix.md").write_text(matrix_markdown(rows))
    plot_matrix(rows, out / "matrix.png")
    return rows
