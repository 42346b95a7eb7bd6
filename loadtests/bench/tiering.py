"""`tierserve bench tiering`: what routing saves, measured live on labelled prompts.

Replays router-eval prompts the configured scorer never trained on (each labelled with
whether the weak and the strong model answered it correctly) through a running graph
three ways: all `model: "fast"`, all `model: "reasoning"`, and `model: "auto"`. Cost:
priced with each tier's `cost_per_1k_tokens` on the tokens actually served, and the
stack's CPU-seconds per request and req/s at a fixed concurrency. Quality: the label of
the tier each prompt actually went to, as accuracy relative to all-reasoning. A sweep of
target reasoning shares is computed offline from the scorer's scores and the per-prompt
token counts of the two pinned runs.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
import shutil
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

MODES = ("fast", "reasoning", "auto")
SHARES = (0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0)


@dataclass(frozen=True)
class Sample:
    prompt: str
    weak_ok: bool
    strong_ok: bool
    source: str


def sample(profile: str, n: int, seed: int) -> list[Sample]:
    """n (0: all) held-out prompts (unseen by the configured scorer) that fit the weakest tier's context,
    counted as `tierserve route-eval --tiering` counts them (tooling/routing/training/tiering.py)."""
    from app.config.loader import REPO_ROOT, load_config
    from app.routing.scorer import load_scorer
    from tooling.routing.training.data import DEFAULT_DATA_DIR
    from tooling.routing.training.evaluate import heldout_rows
    from tooling.routing.training.tiering import priced

    config = load_config(profile)
    scorer = load_scorer(REPO_ROOT / config.routing.learned.artifact)
    rows = heldout_rows(DEFAULT_DATA_DIR, scorer)  # type: ignore[arg-type]
    rows = priced(config, random.Random(seed).sample(rows, len(rows))).rows[:n or None]
    return [Sample(r.prompt, r.weak_ok, r.strong_ok, r.source) for r in rows]


@contextlib.contextmanager
def running_stack(profile: str) -> Iterator[tuple[str, Path]]:
    """A stack of our own (free ports, temp dir, open API), stopped on exit."""
    from tooling.local_cluster import start_private_stack, stop

    temp_dir = tempfile.mkdtemp(prefix="tsb-", dir="/tmp")  # short: Ray's unix sockets
    stack = None
    try:
        stack = start_private_stack(profile, temp_dir)
        yield stack.base_url, Path(temp_dir)
    finally:
        if stack is not None:
            stop(stack)
        shutil.rmtree(temp_dir, ignore_errors=True)


def _stack_cpu_s(temp_dir: Path) -> float:
    """User+system CPU seconds of every process of our stack so far (engines included)."""
    import psutil

    from tooling.local_cluster import LocalStack, stack_processes

    total = 0.0
    for proc in stack_processes(LocalStack(temp_dir=str(temp_dir))):
        with contextlib.suppress(psutil.Error):
            t = proc.cpu_times()
            total += t.user + t.system + t.children_user + t.children_system
    return total


RETRIES = 30


async def _replay(base_url: str, prompts: list[str], model: str, concurrency: int,
                  max_tokens: int) -> list[dict[str, Any]]:
    import httpx

    sem = asyncio.Semaphore(concurrency)
    out: list[dict[str, Any]] = [{} for _ in prompts]
    retried = [0] * len(prompts)

    async def one(i: int, client: httpx.AsyncClient) -> None:
        body = {"model": model, "messages": [{"role": "user", "content": prompts[i]}],
                "max_tokens": max_tokens, "temperature": 0}
        async with sem:
            # A well-behaved client: a 429/503 says when to come back (the per-key rate limit
            # is 50 req/s, and the fast tier answers faster than that).
            for _ in range(RETRIES):
                resp = await client.post(f"{base_url}/v1/chat/completions", json=body)
                if resp.status_code not in (429, 503):
                    break
                retried[i] += 1
                await asyncio.sleep(float(resp.headers.get("retry-after", "1")))
        usage = resp.json().get("usage", {}) if resp.status_code == 200 else {}
        out[i] = {"status": resp.status_code, "tier": resp.headers.get("x-tierserve-tier"),
                  "error": None if resp.status_code == 200 else resp.text[:300],
                  "reason": resp.headers.get("x-tierserve-route-reason"),
                  "tokens": int(usage.get("total_tokens", 0)), "retried": retried[i]}

    # The same placeholder key the e2e tests' OpenAI client sends (the stack's key store is empty).
    async with httpx.AsyncClient(timeout=300, headers={"authorization": "Bearer unused"}) as client:
        await asyncio.gather(*(one(i, client) for i in range(len(prompts))))
    return out


def run_live(base_url: str, temp_dir: Path, samples: list[Sample], concurrency: int,
             max_tokens: int) -> dict[str, Any]:
    prompts = [s.prompt for s in samples]
    asyncio.run(_replay(base_url, prompts[:4], "auto", 2, max_tokens))  # warm both paths
    runs = {}
    for mode in MODES:
        cpu0, t0 = _stack_cpu_s(temp_dir), time.perf_counter()
        res = asyncio.run(_replay(base_url, prompts, mode, concurrency, max_tokens))
        wall, cpu = time.perf_counter() - t0, _stack_cpu_s(temp_dir) - cpu0
        runs[mode] = {"requests": res, "wall_s": wall, "cpu_s": cpu}
    return runs


def summarise(runs: dict[str, Any], samples: list[Sample], costs: dict[str, float],
              weak_tier: str, strong_tier: str, scores: np.ndarray) -> dict[str, Any]:
    weak = np.array([s.weak_ok for s in samples], dtype=float)
    strong = np.array([s.strong_ok for s in samples], dtype=float)
    n = len(samples)
    # Per prompt and tier: tokens served and price, from the two pinned runs.
    tokens = {t: np.array([r["tokens"] for r in runs[t]["requests"]], dtype=float)
              for t in (weak_tier, strong_tier)}
    price = {t: tokens[t] / 1000 * costs[t] for t in tokens}
    ref_acc, ref_cost = strong.mean(), price[strong_tier].sum()
    table = []
    for mode in MODES:
        reqs = runs[mode]["requests"]
        to_strong = np.array([r["tier"] == strong_tier for r in reqs])
        ok = np.array([r["status"] == 200 for r in reqs])
        acc = np.where(to_strong, strong, weak).mean()
        cost = sum(np.array([r["tokens"] for r in reqs]) / 1000
                   * np.array([costs.get(r["tier"] or "", 0.0) for r in reqs]))
        table.append({"run": f"all {mode}" if mode != "auto" else "auto (router)",
                      "reasoning_share": float(to_strong.mean()), "errors": int((~ok).sum()),
                      "retried_429_503": int(sum(r.get("retried", 0) for r in reqs)),
                      "accuracy": float(acc), "rel_accuracy": float(acc / ref_acc),
                      "priced_cost": float(cost), "rel_priced_cost": float(cost / ref_cost),
                      "cpu_s_per_req": runs[mode]["cpu_s"] / n, "req_per_s": n / runs[mode]["wall_s"]})
    cpu = {t: runs[t]["cpu_s"] / n for t in (weak_tier, strong_tier)}
    order = np.argsort(-scores, kind="stable")
    sweep = []
    for share in SHARES:
        k = round(share * n)
        go = np.zeros(n, dtype=bool)
        go[order[:k]] = True
        acc = np.where(go, strong, weak).mean()
        cost = np.where(go, price[strong_tier], price[weak_tier]).sum()
        sweep.append({"reasoning_share": share, "rel_accuracy": float(acc / ref_acc),
                      "rel_priced_cost": float(cost / ref_cost),
                      "rel_cpu": float((k * cpu[strong_tier] + (n - k) * cpu[weak_tier])
                                       / (n * cpu[strong_tier]))})
    return {"n": n, "table": table, "sweep": sweep,
            "all_reasoning_accuracy": float(ref_acc), "all_fast_accuracy": float(weak.mean())}


def markdown(summary: dict[str, Any], concurrency: int, max_tokens: int) -> str:
    lines = [f"n = {summary['n']} held-out router-eval prompts, concurrency {concurrency}, "
             f"max_tokens {max_tokens}; accuracy from the labels of the tier each prompt went to",
             "", "| run | to reasoning | accuracy (vs all-reasoning) | priced cost (vs all-reasoning) "
             "| stack CPU-s / req | req/s | errors | 429/503 retried |", "|---|---|---|---|---|---|---|---|"]
    for r in summary["table"]:
        lines.append(f"| {r['run']} | {r['reasoning_share']:.0%} | {r['accuracy']:.3f} "
                     f"({r['rel_accuracy']:.1%}) | {r['priced_cost']:.3f} ({r['rel_priced_cost']:.1%}) "
                     f"| {r['cpu_s_per_req']:.2f} | {r['req_per_s']:.2f} | {r['errors']} "
                     f"| {r['retried_429_503']} |")
    lines += ["", "Sweep of target shares (offline, scorer's scores; costs from the pinned runs):", "",
              "| to reasoning | accuracy vs all-reasoning | priced cost | CPU |", "|---|---|---|---|"]
    for s in summary["sweep"]:
        lines.append(f"| {s['reasoning_share']:.0%} | {s['rel_accuracy']:.1%} | "
                     f"{s['rel_priced_cost']:.1%} | {s['rel_cpu']:.1%} |")
    return "\n".join(lines) + "\n"


def plot(summary: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4.2))
    sw = summary["sweep"]
    ax.plot([s["rel_priced_cost"] * 100 for s in sw], [s["rel_accuracy"] * 100 for s in sw], "-o",
            ms=3, label="sweep of reasoning shares (priced)")
    ax.plot([s["rel_cpu"] * 100 for s in sw], [s["rel_accuracy"] * 100 for s in sw], "--", ms=3,
            label="same, measured stack CPU")
    for r in summary["table"]:
        ax.plot(r["rel_priced_cost"] * 100, r["rel_accuracy"] * 100, "s", label=f"live: {r['run']}")
    ax.axhline(95, color="grey", lw=0.8, ls=":")
    ax.axvline(50, color="grey", lw=0.8, ls=":")
    ax.set_xlabel("cost, % of all-reasoning")
    ax.set_ylabel("accuracy, % of all-reasoning")
    ax.set_title(f"What tiering saves (n={summary['n']}, held-out prompts)")
    ax.legend(fontsize=7, loc="lower right")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)


def run_tiering_bench(profile: str, n: int, concurrency: int, max_tokens: int, seed: int,
                      out_dir: Path) -> dict[str, Any]:
    from app.config.loader import REPO_ROOT, load_config
    from app.routing.assemble import build_pipeline
    from app.routing.features import estimate_tokens
    from app.routing.scorer import load_scorer

    config = load_config(profile)
    samples = sample(profile, n, seed)
    scorer = load_scorer(REPO_ROOT / config.routing.learned.artifact)
    # The sweep ranks as the picker does: by score, or by score per token of cost (cost-ladder).
    picker = build_pipeline(config).picker
    scores = np.array([picker.plugin.key(scorer.score_text(s.prompt), estimate_tokens(s.prompt))  # type: ignore
                       for s in samples])
    with running_stack(profile) as (base_url, temp_dir):
        runs = run_live(base_url, temp_dir, samples, concurrency, max_tokens)
    costs = {t.name: t.cost_per_1k_tokens for t in config.tiers}
    summary = summarise(runs, samples, costs, config.routing.weak_tier, config.routing.strong_tier,
                        scores)
    summary["scorer"] = config.routing.learned.artifact
    summary["picker"] = picker.name
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "tiering.json").write_text(json.dumps(summary | {"runs": runs}, indent=1))
    (out_dir / "tiering.md").write_text(markdown(summary, concurrency, max_tokens))
    plot(summary, out_dir / "tiering.png")
    return summary
