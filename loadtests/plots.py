"""PNG plots of a load test: latency/TTFT vs concurrency, tier mix over time, the matrix."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # files only; no display on a server
import matplotlib.pyplot as plt  # noqa: E402

from loadtests.records import RequestRecord  # noqa: E402
from loadtests.summary import tier_timeline  # noqa: E402


def plot_vs_concurrency(summary: dict[str, Any], path: Path) -> Path:
    groups = summary.get("by_concurrency", {})
    users = [int(u) for u in groups]
    fig, ax = plt.subplots(figsize=(7, 4))
    for metric, style in (("latency_ms", "-"), ("ttft_ms", "--")):
        for q in ("p50", "p95"):
            ys = [groups[str(u)][metric][q] for u in users]
            ax.plot(users, [y if y is not None else float("nan") for y in ys], style, marker="o",
                    label=f"{metric.split('_')[0]} {q}")
    ax.set(xlabel="concurrent users", ylabel="ms", title="Latency and TTFT vs concurrency")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def plot_tier_mix(records: Sequence[RequestRecord], path: Path, bin_s: float = 5.0) -> Path:
    table = tier_timeline(records, bin_s)
    t = table.pop("t")
    fig, ax = plt.subplots(figsize=(7, 4))
    if t and table:
        ax.stackplot(t, *[[n / bin_s for n in row] for row in table.values()], labels=list(table),
                     step="post")
        ax.legend(loc="upper left")
    ax.set(xlabel="seconds from start", ylabel="successful requests/s", title="Tier mix over time")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def plot_matrix(rows: Sequence[dict[str, Any]], path: Path) -> Path:
    """rows: {payload, users, rps, latency_p95_ms, ttft_p95_ms}."""
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 4))
    for payload in sorted({r["payload"] for r in rows}):
        mine = sorted((r for r in rows if r["payload"] == payload), key=lambda r: r["users"])
        xs = [r["users"] for r in mine]
        left.plot(xs, [r["rps"] for r in mine], marker="o", label=payload)
        right.plot(xs, [r["latency_p95_ms"] or float("nan") for r in mine], marker="o",
                   label=f"{payload} latency p95")
        right.plot(xs, [r["ttft_p95_ms"] or float("nan") for r in mine], "--", marker="x",
                   label=f"{payload} TTFT p95")
    left.set(xscale="log", xlabel="concurrent users", ylabel="req/s", title="Throughput")
    right.set(xscale="log", yscale="log", xlabel="concurrent users", ylabel="ms", title="p95 latency / TTFT")
    for ax in (left, right):
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
