"""`tierserve bench overhead`: Tierserve and ray.serve.llm against bare vLLM, in one run.

All three targets run side by side (idle vLLM engines take no CPU), and passes
interleave them in rotating order (A,B,C / B,C,A / ...) so machine drift hits
all alike. Each figure is the median over passes.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import signal
import sys
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import psutil

from app.engine_shm import mapped_shm_segments, remove_orphaned_segments
from loadtests.bench import targets as tg
from loadtests.bench.stats import median_of_passes, pass_figures, ratio
from loadtests.bench.stream_client import chat_body, run_pass
from tooling.local_cluster import free_port

BARE, RAYLLM, TIERSERVE = "bare-vllm", "ray-serve-llm", "tierserve"
# Targets from the issue: TTFT p50 overhead at concurrency 1, throughput share at 32.
TTFT_OVERHEAD_MS = 5.0
THROUGHPUT_SHARE = 0.90


@dataclass
class OverheadPlan:
    profile: str = "local-cpu"
    tier: str = "fast"
    concurrencies: list[int] = field(default_factory=lambda: [1, 8, 32])
    passes: int = 3
    min_requests: int = 16  # per pass; at least 4 per concurrent stream
    prompt_words: int = 48  # ~64 prompt tokens with the chat template
    max_tokens: int = 64
    targets: list[str] = field(default_factory=lambda: [BARE, RAYLLM, TIERSERVE])
    full_graph: bool = False  # deploy every tier of the profile, not only `tier`
    # "module:function(config) -> Application"; lets a prototype graph be measured the same way.
    graph_builder: str = "app.graph:build_graph"
    breakdown: bool = True  # hop-by-hop timings after the main passes
    # Re-measure bare and Tierserve with their HTTP front ends pinned off the engine's core.
    pinned_variant: bool = False
    serve_port: int = 8100
    bare_port: int = 8101
    rayllm_port: int = 8102
    temp_dir: str = "/tmp/ts-bench"
    rayllm_temp_dir: str = "/tmp/ts-bench-rayllm"

    def requests_for(self, concurrency: int) -> int:
        return max(self.min_requests, concurrency * 4)


@dataclass
class Running:
    targets: dict[str, tg.Target]
    cold_start_s: dict[str, float]
    bare_pid: int | None
    started_at: dict[str, float] = field(default_factory=dict)  # wall clock, to read logs by


@contextlib.contextmanager
def running_targets(plan: OverheadPlan, log_dir: Path) -> Iterator[Running]:
    """Start the chosen targets one after another, timing each start (its cold start)."""
    from tooling.local_cluster import engine_env

    env = engine_env()
    os.environ.update(env)  # before ray is imported: it reads RAY_AUTH_MODE once
    from app.config.loader import load_config

    config = load_config(plan.profile)
    tier = config.tier(plan.tier)
    found: dict[str, tg.Target] = {}
    cold: dict[str, float] = {}
    started: dict[str, float] = {}
    bare = rayllm = None
    ray_up = False
    try:
        if BARE in plan.targets:
            started[BARE] = time.time()
            bare, cold[BARE] = tg.start_bare(tier, plan.bare_port, env, log_dir / "bare-vllm.log")
            found[BARE] = tg.Target(BARE, f"http://127.0.0.1:{plan.bare_port}/v1/chat/completions")
        if RAYLLM in plan.targets:  # its own Ray, with Ray Serve's defaults
            rayllm, cold[RAYLLM] = tg.start_rayllm(plan.profile, plan.tier, plan.rayllm_port,
                                                   plan.rayllm_temp_dir, env, log_dir / "rayllm.log")
            found[RAYLLM] = tg.Target(RAYLLM, f"http://127.0.0.1:{plan.rayllm_port}/v1/chat/completions")
        if TIERSERVE in plan.targets:
            # The driver's Ray gets the data-path switches of configs/ (raylet env -> every process).
            os.environ.update(config.server.ray_serve.env(free_port(), free_port()))
            _start_serve(plan)
            ray_up = True
            base = f"http://127.0.0.1:{plan.serve_port}"
            cold[TIERSERVE] = _deploy_tierserve(plan.graph_builder, config if plan.full_graph else
                                                tg.single_tier_config(config, plan.tier), base)
            # The clock starts after the driver imported the graph's modules (vLLM among them).
            started[TIERSERVE] = time.time() - cold[TIERSERVE]
            found[TIERSERVE] = tg.Target(TIERSERVE, f"{base}/v1/chat/completions")
        yield Running(found, cold, bare.pid if bare is not None else None, started)
    finally:
        # vLLM engines leave their shared-memory segments behind; note ours before stopping.
        ours = mapped_shm_segments([p.pid for p in psutil.Process().children(recursive=True)])
        try:
            if ray_up:
                _stop_serve()
        finally:
            for proc in (rayllm, bare):
                if proc is not None:
                    tg.stop_tree(proc)
            remove_orphaned_segments(ours)


def _stop_serve() -> None:
    import ray
    from ray import serve

    try:
        # Handles made inside a finished asyncio.run() fail to shut down; the
        # cluster goes with ray.shutdown() anyway.
        with contextlib.suppress(RuntimeError):
            serve.shutdown()
    finally:
        ray.shutdown()


def _start_serve(plan: OverheadPlan) -> None:
    import ray
    from ray import serve

    Path(plan.temp_dir).mkdir(parents=True, exist_ok=True)
    # 8 logical CPUs: each LLM replica's placement group asks for 2 (shared/CPU-VLLM.md).
    ray.init(address="local", num_cpus=8, include_dashboard=False, _temp_dir=plan.temp_dir,
             _metrics_export_port=free_port(), log_to_driver=False)
    serve.start(http_options={"host": "127.0.0.1", "port": plan.serve_port})


def _deploy_tierserve(builder: str, config: Any, base: str) -> float:
    import importlib

    from ray import serve

    module, func = builder.split(":")
    build_graph = getattr(importlib.import_module(module), func)
    start = time.monotonic()
    # Not serve.run: it polls the app's status once a second; readiness is the ingress's word.
    serve.run_many([serve.RunTarget(build_graph(config), name="tierserve", route_prefix="/")],
                   wait_for_applications_running=False)
    tg.wait_http(f"{base}/readyz", 600)  # ready = every tier answered a warm-up
    return time.monotonic() - start


def prompt(words: int) -> str:
    return " ".join(["hello"] * words)


def measure(plan: OverheadPlan, found: dict[str, tg.Target], served_model: str) -> dict[str, Any]:
    body = chat_body(served_model, prompt(plan.prompt_words), plan.max_tokens)
    order = [t for t in plan.targets if t in found]
    per: dict[str, dict[int, list[dict]]] = {t: {} for t in order}
    for conc in plan.concurrencies:
        n = plan.requests_for(conc)
        for name in order:  # warm-up at this concurrency, not recorded
            asyncio.run(run_pass(found[name].chat_url, body, conc, conc))
        for rep in range(plan.passes):
            for name in order[rep % len(order):] + order[: rep % len(order)]:
                timings, wall = asyncio.run(run_pass(found[name].chat_url, body, conc, n))
                figures = pass_figures(timings, wall)
                per[name].setdefault(conc, []).append(figures)
                print(f"  c={conc:<3} pass {rep + 1}/{plan.passes} {name:<14} "
                      f"ttft p50 {figures['ttft_p50_ms'] or 0:7.1f} ms  "
                      f"{figures['req_per_s']:6.2f} req/s  errors {figures['errors']}", flush=True)
    return {name: {str(c): median_of_passes(p) for c, p in by_c.items()} for name, by_c in per.items()}


def compare(results: dict[str, Any]) -> dict[str, Any]:
    """Ratios against bare vLLM, and whether Tierserve met the issue's targets."""
    bare = results.get(BARE, {})
    out: dict[str, Any] = {}
    for name in (TIERSERVE, RAYLLM):
        if name not in results or not bare:
            continue
        rows = {}
        for conc, fig in results[name].items():
            base = bare.get(conc, {})
            rows[conc] = {
                "ttft_p50_delta_ms": (fig["ttft_p50_ms"] - base["ttft_p50_ms"])
                if fig.get("ttft_p50_ms") is not None and base.get("ttft_p50_ms") is not None else None,
                "ttft_p50_ratio": ratio(fig.get("ttft_p50_ms"), base.get("ttft_p50_ms")),
                "req_per_s_ratio": ratio(fig.get("req_per_s"), base.get("req_per_s")),
                "tok_per_s_ratio": ratio(fig.get("tok_per_s"), base.get("tok_per_s")),
            }
        out[f"{name}/bare"] = rows
    ts = out.get(f"{TIERSERVE}/bare", {})
    c1, c32 = ts.get("1", {}), ts.get("32", {})
    if c1.get("ttft_p50_delta_ms") is not None:
        out["target_ttft_overhead_c1"] = {"limit_ms": TTFT_OVERHEAD_MS,
                                          "measured_ms": c1["ttft_p50_delta_ms"],
                                          "met": c1["ttft_p50_delta_ms"] <= TTFT_OVERHEAD_MS}
    if c32.get("tok_per_s_ratio") is not None:
        out["target_throughput_c32"] = {"limit": THROUGHPUT_SHARE, "measured": c32["tok_per_s_ratio"],
                                        "met": c32["tok_per_s_ratio"] >= THROUGHPUT_SHARE}
    return out


def _fmt(value: float | None, spec: str) -> str:
    return "–" if value is None else format(value, spec)


def _loads(report: dict[str, Any]) -> str:
    load = report.get("loadavg_1m") or {}
    return f"{load.get('before', 0):.1f} → {load.get('after', 0):.1f}"


def _table(results: dict[str, Any], cmp: dict[str, Any], concurrencies: list[int]) -> list[str]:
    lines = ["| concurrency | target | TTFT p50 | TTFT p99 | ITL p50 | req/s | tok/s | TTFT Δ vs bare"
             " | req/s vs bare |",
             "|---|---|---|---|---|---|---|---|---|"]
    for conc in map(str, concurrencies):
        for name, by_c in results.items():
            fig = by_c.get(conc)
            if fig is None:
                continue
            rel = cmp.get(f"{name}/bare", {}).get(conc, {})
            lines.append(
                f"| {conc} | {name} | {_fmt(fig['ttft_p50_ms'], '.1f')} ms"
                f" | {_fmt(fig['ttft_p99_ms'], '.1f')} ms | {_fmt(fig['itl_p50_ms'], '.2f')} ms"
                f" | {_fmt(fig['req_per_s'], '.2f')} | {_fmt(fig['tok_per_s'], '.0f')}"
                f" | {_fmt(rel.get('ttft_p50_delta_ms'), '+.1f') + ' ms' if rel else '–'}"
                f" | {_fmt(rel.get('req_per_s_ratio'), '.2f') + '×' if rel else '–'} |")
    return lines


def markdown(report: dict[str, Any]) -> str:
    plan, results, cmp = report["plan"], report["results"], report["comparison"]
    lines = [f"Streaming chat, {plan['prompt_words']}-word prompt, {plan['max_tokens']} output tokens "
             f"(ignore_eos), median of {plan['passes']} interleaved passes; model "
             f"`{report['served_model']}`; machine: {report['machine']}; "
             f"1-min load average {_loads(report)}.", "",
             *_table(results, cmp, plan["concurrencies"])]
    if report.get("cold_start_s"):
        lines += ["", "Cold start (deploy → ready, started one after another): " + ", ".join(
            f"{k} {v:.1f} s" for k, v in report["cold_start_s"].items())]
    lines.append("")
    if "target_ttft_overhead_c1" in cmp:
        t = cmp["target_ttft_overhead_c1"]
        lines.append(f"- Tierserve TTFT p50 overhead at concurrency 1: {t['measured_ms']:+.1f} ms "
                     f"(target ≤ {t['limit_ms']:g} ms): {'met' if t['met'] else 'missed'}")
    if "target_throughput_c32" in cmp:
        t = cmp["target_throughput_c32"]
        lines.append(f"- Tierserve tok/s at concurrency 32: {t['measured']:.0%} of bare "
                     f"(target ≥ {t['limit']:.0%}): {'met' if t['met'] else 'missed'}")
    if report.get("breakdown_ms"):
        lines += ["", "Hop breakdown at concurrency 1 (medians, ms): " + ", ".join(
            f"{k} {v:.1f}" for k, v in report["breakdown_ms"].items())]
    if report.get("cpu_s_per_pass"):
        lines += ["", f"CPU seconds per pass at concurrency {plan['concurrencies'][-1]}, by process:"]
        lines += [f"- {name}: " + ", ".join(f"{k} {v:.2f}" for k, v in split.items())
                  for name, split in report["cpu_s_per_pass"].items()]
    if report.get("pinned_front_ends"):
        pf = report["pinned_front_ends"]
        lines += ["", "With Serve's proxy/replicas and bare vLLM's API process pinned to cores "
                  f"{pf['cores']}:",
                  "", *_table(pf["results"], pf["comparison"], sorted(int(c) for c in
                                                                      next(iter(pf["results"].values()))))]
    return "\n".join(lines) + "\n"


def machine() -> str:
    model = "unknown CPU"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    import psutil

    return f"{model}, {os.cpu_count()} cores, {psutil.virtual_memory().total / 2**30:.0f} GiB, no GPU"


def _diagnose(plan: OverheadPlan, run: Running, served: str) -> dict[str, Any]:
    """Hop breakdown, then the pinned-front-ends variant (bare and Tierserve only)."""
    from app.config.loader import load_config
    from loadtests.bench import breakdown as bd

    if not {BARE, TIERSERVE} <= set(run.targets):
        return {}
    out: dict[str, Any] = {}
    serve_base = f"http://127.0.0.1:{plan.serve_port}"
    bare_base = f"http://127.0.0.1:{plan.bare_port}"
    if plan.breakdown:
        out["breakdown_ms"] = bd.hop_breakdown(serve_base, bare_base, served, f"tier-{plan.tier}",
                                               prompt(plan.prompt_words))
        print(f"breakdown: {out['breakdown_ms']}", flush=True)
    if plan.breakdown:
        conc = plan.concurrencies[-1]
        body = chat_body(served, prompt(plan.prompt_words), plan.max_tokens)
        pids = {BARE: [run.bare_pid], TIERSERVE: bd.serve_pids()}
        out["cpu_s_per_pass"] = {
            name: bd.cpu_split(pids[name], lambda name=name: asyncio.run(
                run_pass(run.targets[name].chat_url, body, conc, plan.requests_for(conc))))
            for name in (BARE, TIERSERVE)}
        print(f"cpu split at c={conc}: {out['cpu_s_per_pass']}", flush=True)
    engine_cores = load_config(plan.profile).tier(plan.tier).resources.cpu_cores
    free = sorted(set(range(os.cpu_count() or 1)) - set(engine_cores))
    if plan.pinned_variant and engine_cores and free and run.bare_pid:
        pinned = bd.pin_front_ends(free, (run.bare_pid,))
        variant = replace(plan, targets=[BARE, TIERSERVE], concurrencies=[plan.concurrencies[0],
                                                                           plan.concurrencies[-1]])
        results = measure(variant, run.targets, served)
        out["pinned_front_ends"] = {"cores": free, "pids": pinned, "results": results,
                                    "comparison": compare(results)}
    return out


def run_overhead(plan: OverheadPlan, out_dir: Path) -> dict[str, Any]:
    out_dir.mkdir(parents=True, exist_ok=True)
    from app.config.loader import load_config

    served = load_config(plan.profile).tier(plan.tier).served_model_name
    started = time.time()
    load_before = os.getloadavg()
    # A plain `kill` must still stop the bench's Ray and bare server (finally blocks run).
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    logging.getLogger("httpx").setLevel(logging.WARNING)  # one line per request otherwise
    extra: dict[str, Any] = {}
    with running_targets(plan, out_dir) as run:
        print(f"targets ready: { {k: round(v, 1) for k, v in run.cold_start_s.items()} }", flush=True)
        results = measure(plan, run.targets, served)
        (out_dir / "partial.json").write_text(json.dumps(results, indent=2))  # survives a failed diagnosis
        extra = _diagnose(plan, run, served)
    report = {"plan": asdict(plan), "served_model": served, "machine": machine(),
              "started_at": started, "duration_s": time.time() - started,
              # Other work on the machine shows here; the interleaved passes share it.
              "loadavg_1m": {"before": load_before[0], "after": os.getloadavg()[0]},
              "cold_start_s": run.cold_start_s, "results": results, "comparison": compare(results),
              **extra}
    (out_dir / "overhead.json").write_text(json.dumps(report, indent=2))
    (out_dir / "overhead.md").write_text(markdown(report))
    return report
