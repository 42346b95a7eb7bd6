"""`tierserve bench overhead`: Tierserve and ray.serve.llm against bare vLLM, in one run.

All three targets run side by side (idle vLLM engines take no CPU), and passes
interleave them in rotating order (A,B,C / B,C,A / ...) so machine drift hits
all alike. Each figure is the median over passes.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import socket
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Iterator

from loadtests.bench.stats import median_of_passes, pass_figures, ratio
from loadtests.bench.stream_client import chat_body, run_pass
from loadtests.bench import targets as tg

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
    serve_port: int = 8100
    bare_port: int = 8101
    temp_dir: str = "/tmp/ts-bench"

    def requests_for(self, concurrency: int) -> int:
        return max(self.min_requests, concurrency * 4)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def running_targets(plan: OverheadPlan, log_dir: Path) -> Iterator[tuple[dict[str, tg.Target], dict[str, float]]]:
    """Start the chosen targets one after another; yields them and their cold starts (s)."""
    from app.local_cluster import engine_env

    env = engine_env()
    os.environ.update(env)  # before ray is imported: it reads RAY_AUTH_MODE once
    from app.config.loader import load_config

    config = load_config(plan.profile)
    tier = config.tier(plan.tier)
    found: dict[str, tg.Target] = {}
    cold: dict[str, float] = {}
    bare = None
    ray_up = False
    try:
        if BARE in plan.targets:
            bare, cold[BARE] = tg.start_bare(tier, plan.bare_port, env, log_dir / "bare-vllm.log")
            found[BARE] = tg.Target(BARE, f"http://127.0.0.1:{plan.bare_port}/v1/chat/completions")
        if {RAYLLM, TIERSERVE} & set(plan.targets):
            _start_serve(plan)
            ray_up = True
        base = f"http://127.0.0.1:{plan.serve_port}"
        if TIERSERVE in plan.targets:
            cold[TIERSERVE] = _deploy_tierserve(config if plan.full_graph else
                                                tg.single_tier_config(config, plan.tier), base)
            found[TIERSERVE] = tg.Target(TIERSERVE, f"{base}/v1/chat/completions")
        if RAYLLM in plan.targets:
            cold[RAYLLM] = _deploy_rayllm(tier, base)
            found[RAYLLM] = tg.Target(RAYLLM, f"{base}/rayllm/v1/chat/completions")
        yield found, cold
    finally:
        if ray_up:
            import ray
            from ray import serve

            try:
                serve.shutdown()
            finally:
                ray.shutdown()
        if bare is not None:
            tg.stop_bare(bare)


def _start_serve(plan: OverheadPlan) -> None:
    import ray
    from ray import serve

    Path(plan.temp_dir).mkdir(parents=True, exist_ok=True)
    # 8 logical CPUs: each LLM replica's placement group asks for 2 (shared/CPU-VLLM.md).
    ray.init(address="local", num_cpus=8, include_dashboard=False, _temp_dir=plan.temp_dir,
             _metrics_export_port=free_port(), log_to_driver=False)
    serve.start(http_options={"host": "127.0.0.1", "port": plan.serve_port})


def _deploy_tierserve(config: Any, base: str) -> float:
    from ray import serve

    from app.graph import build_graph

    start = time.monotonic()
    serve.run(build_graph(config), name="tierserve", route_prefix="/")
    tg.wait_http(f"{base}/readyz", 600)  # ready = every tier answered a warm-up
    return time.monotonic() - start


def _deploy_rayllm(tier: Any, base: str) -> float:
    from ray import serve
    from ray.serve.llm import build_openai_app

    start = time.monotonic()
    serve.run(build_openai_app({"llm_configs": [tg.rayllm_config(tier)]}), name="rayllm",
              route_prefix="/rayllm")
    tg.wait_http(f"{base}/rayllm/v1/models", 600)
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


def markdown(report: dict[str, Any]) -> str:
    plan, results, cmp = report["plan"], report["results"], report["comparison"]
    lines = [f"Streaming chat, {plan['prompt_words']}-word prompt, {plan['max_tokens']} output tokens "
             f"(ignore_eos), median of {plan['passes']} interleaved passes; model "
             f"`{report['served_model']}`; machine: {report['machine']}.", "",
             "| concurrency | target | TTFT p50 | TTFT p99 | ITL p50 | req/s | tok/s | TTFT Δ vs bare | req/s vs bare |",
             "|---|---|---|---|---|---|---|---|---|"]
    for conc in map(str, plan["concurrencies"]):
        for name, by_c in results.items():
            fig = by_c.get(conc)
            if fig is None:
                continue
            rel = cmp.get(f"{name}/bare", {}).get(conc, {})
            lines.append(
                f"| {conc} | {name} | {_fmt(fig['ttft_p50_ms'], '.1f')} ms | {_fmt(fig['ttft_p99_ms'], '.1f')} ms"
                f" | {_fmt(fig['itl_p50_ms'], '.2f')} ms | {_fmt(fig['req_per_s'], '.2f')} | {_fmt(fig['tok_per_s'], '.0f')}"
                f" | {_fmt(rel.get('ttft_p50_delta_ms'), '+.1f') + ' ms' if rel else '–'}"
                f" | {_fmt(rel.get('req_per_s_ratio'), '.2f') + '×' if rel else '–'} |")
    if report.get("cold_start_s"):
        lines += ["", "Cold start (deploy → ready, started one after another): " + ", ".join(
            f"{k} {v:.1f} s" for k, v in report["cold_start_s"].items())]
    if "target_ttft_overhead_c1" in cmp:
        t = cmp["target_ttft_overhead_c1"]
        lines.append(f"- Tierserve TTFT p50 overhead at concurrency 1: {t['measured_ms']:+.1f} ms "
                     f"(target ≤ {t['limit_ms']:g} ms): {'met' if t['met'] else 'missed'}")
    if "target_throughput_c32" in cmp:
        t = cmp["target_throughput_c32"]
        lines.append(f"- Tierserve tok/s at concurrency 32: {t['measured']:.0%} of bare "
                     f"(target ≥ {t['limit']:.0%}): {'met' if t['met'] else 'missed'}")
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


def run_overhead(plan: OverheadPlan, out_dir: Path) -> dict[str, Any]:
    out_dir.mkdir(parents=True, exist_ok=True)
    from app.config.loader import load_config

    served = load_config(plan.profile).tier(plan.tier).served_model_name
    started = time.time()
    with running_targets(plan, out_dir) as (found, cold):
        print(f"targets ready: { {k: round(v, 1) for k, v in cold.items()} }", flush=True)
        results = measure(plan, found, served)
    report = {"plan": asdict(plan), "served_model": served, "machine": machine(),
              "started_at": started, "duration_s": time.time() - started,
              "cold_start_s": cold, "results": results, "comparison": compare(results)}
    (out_dir / "overhead.json").write_text(json.dumps(report, indent=2))
    (out_dir / "overhead.md").write_text(markdown(report))
    return report
