"""`tierserve loadtest [SCENARIO|matrix]` and `tierserve bench {overhead,router,tiering,cold-start,...}`.

Imported by tooling/cli.py through `add_loadtest_commands`; heavy imports wait for the command.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from dataclasses import replace
from pathlib import Path

from loadtests.scenario import SCENARIOS, Scenario, require_loopback, scenario

DEFAULT_BASE_URL = os.environ.get("TIERSERVE_BASE_URL", "http://127.0.0.1:8000")
RESULTS = Path("results")


def _csv_ints(text: str) -> list[int]:
    return [int(x) for x in text.split(",") if x.strip()]


def _scenario_from(args: argparse.Namespace):
    name = "mixed" if args.scenario == "matrix" else args.scenario
    return scenario(name, duration_s=args.duration, users=args.users, hard_share=args.hard_share,
                    max_tokens=args.max_tokens, stream=args.stream, session_turns=args.session_turns,
                    rate_rps=args.rate, steps=_csv_ints(args.steps) if args.steps else None,
                    step_s=args.step_s, model=args.model, clients=args.clients)


def _key_issuer(args: argparse.Namespace, base_url: str):
    """Where the run's client keys are created: the admin API with an admin key, else the keys
    database the stack reads (as `tierserve keys create`)."""
    from loadtests.clients import AdminApi

    if admin := args.admin_key or os.environ.get("TIERSERVE_ADMIN_KEY"):
        return AdminApi(base_url, admin)
    from app.config import load_config
    from app.keys.store import KeyStore, resolve_db_url

    store = KeyStore(args.keys_db or resolve_db_url(load_config(args.profile).server.keys))
    if store.count() == 0:
        print("tierserve: note: this keys database has no key, so the API was open; it requires "
              "a key from now on (revoked keys count)", flush=True)
    return store


def cmd_loadtest(args: argparse.Namespace) -> int:
    try:
        base_url = require_loopback(args.base_url)
    except ValueError as exc:
        print(f"tierserve: {exc}")
        return 2
    if args.api_key:
        os.environ["TIERSERVE_API_KEY"] = args.api_key
    prompts = Path(args.prompts) if args.prompts else None
    chosen = _scenario_from(args)
    if not chosen.clients:
        return _run_loadtest(args, chosen, base_url, prompts)
    from loadtests.clients import KEYS_ENV, client_keys

    run = f"lt-{time.strftime('%Y%m%d-%H%M%S')}"
    with client_keys(_key_issuer(args, base_url), chosen.clients, run) as keys:
        print(f"{len(keys)} simulated clients, each with its own API key (team loadtest; revoked "
              "at the end)", flush=True)
        os.environ[KEYS_ENV] = ",".join(keys)
        try:
            return _run_loadtest(args, chosen, base_url, prompts)
        finally:
            os.environ.pop(KEYS_ENV, None)


def _run_loadtest(args: argparse.Namespace, chosen: Scenario, base_url: str, prompts: Path | None) -> int:
    from loadtests.runner import results_dir, run_scenario

    if args.scenario == "matrix":
        from loadtests.matrix import run_matrix

        out = results_dir(Path(args.out), "matrix")
        payloads = [p for p in args.payloads.split(",") if p]
        rows = run_matrix(chosen, base_url, out, _csv_ints(args.concurrency), payloads, prompts)
        print((out / "matrix.md").read_text())
        print(f"results in {out}")
        return 0 if all(r["errors"] == 0 for r in rows) else 1
    out = results_dir(Path(args.out), chosen.name)
    print(f"running {chosen.name} against {base_url} for {chosen.total_s:.0f}s ...", flush=True)
    summary = run_scenario(chosen, base_url, out, prompts)
    print(json.dumps({k: summary[k] for k in ("requests", "ok", "rps", "latency_ms", "ttft_ms",
                                               "errors_by_status", "rate_limited", "clients",
                                               "tier_mix")}, indent=2))
    if summary["rate_limited"] and not chosen.clients:
        print(f"{summary['rate_limited']} requests were refused with 429: every user sent as one "
              "client, and the ingress limits each client (server.rate_limit); --clients N gives "
              "each simulated user its own API key")
    print(f"results in {out}")
    return 0 if summary["ok"] > 0 else 1


def _bench_plan(args: argparse.Namespace):
    from loadtests.bench.overhead import OverheadPlan

    plan = OverheadPlan(profile=args.profile, tier=args.tier, full_graph=args.full_graph,
                        serve_port=args.serve_port, bare_port=args.bare_port, temp_dir=args.temp_dir,
                        graph_builder=args.graph_builder)
    if hasattr(args, "concurrency"):
        plan = replace(plan, concurrencies=_csv_ints(args.concurrency), passes=args.passes,
                       max_tokens=args.max_tokens, targets=args.targets.split(","),
                       breakdown=args.breakdown, pinned_variant=args.pinned_variant)
    return plan


def _results_dir(args: argparse.Namespace, bench: str) -> Path:
    """results/<timestamp>-bench-<name>/ under --out."""
    return Path(args.out) / f"{time.strftime('%Y%m%d-%H%M%S')}-bench-{bench}"


def cmd_bench_overhead(args: argparse.Namespace) -> int:
    from loadtests.bench.overhead import run_overhead

    out = _results_dir(args, "overhead")
    report = run_overhead(_bench_plan(args), out)
    print((out / "overhead.md").read_text())
    print(f"results in {out}")
    return 0 if all(f["errors"] == 0 for by_c in report["results"].values() for f in by_c.values()) else 1


def cmd_bench_router(args: argparse.Namespace) -> int:
    from loadtests.bench.router import router_markdown, run_router_bench

    results = run_router_bench(args.profile, args.n, args.artifact)
    out = _results_dir(args, "router")
    out.mkdir(parents=True)
    (out / "router.json").write_text(json.dumps(results, indent=2))
    (out / "router.md").write_text(router_markdown(results))
    print(router_markdown(results))
    print(f"results in {out}")
    return 0


def cmd_bench_tiering(args: argparse.Namespace) -> int:
    from loadtests.bench.tiering import markdown, run_tiering_bench

    out = _results_dir(args, "tiering")
    summary = run_tiering_bench(args.profile, args.n, args.concurrency, args.max_tokens, args.seed, out)
    print(markdown(summary, args.concurrency, args.max_tokens))
    print(f"results (JSON, table, tiering.png) in {out}")
    return 0


def cmd_bench_cold_start(args: argparse.Namespace) -> int:
    from loadtests.bench.coldstart import run_cold_start, table

    out = _results_dir(args, "cold-start")
    result = run_cold_start(_bench_plan(args), out)
    (out / "cold_start.json").write_text(json.dumps(result, indent=2))
    print(table(result))
    print(f"results in {out}")
    return 0


def cmd_bench_faults(args: argparse.Namespace) -> int:
    from loadtests.bench.faults import FaultsPlan, run_faults, table

    plan = FaultsPlan(concurrency=args.concurrency, phase_s=args.phase_s, kill_after_s=args.kill_after_s,
                      max_tokens=args.max_tokens, phases=args.phases.split(","), profile=args.profile,
                      hang_s=args.hang_s)
    out = _results_dir(args, "faults")
    rows = run_faults(plan, out)
    print(table(rows))
    print(f"results in {out}")
    return 0 if all(r["lost"] == 0 for r in rows) else 1


def cmd_bench_elastic(args: argparse.Namespace) -> int:
    from loadtests.bench.elastic import ElasticPlan, run_elastic, table

    plan = ElasticPlan(profile=args.profile, nodes=args.nodes, low_concurrency=args.low,
                       high_concurrency=args.high, phase_s=args.phase_s, max_tokens=args.max_tokens,
                       policy=args.policy, scale_timeout_s=args.scale_timeout_s, clients=args.clients)
    out = _results_dir(args, "elastic")
    result = run_elastic(plan, out)
    print(table(result))
    print(f"results in {out}")
    return 0 if result["node_kill_lost"] == 0 else 1


def cmd_bench_replica_router(args: argparse.Namespace) -> int:
    from loadtests.bench.replica_router import ROUTERS, ReplicaRouterPlan, run_replica_router_bench, table

    routers = tuple(r for r in args.routers.split(",") if r)
    if unknown := [r for r in routers if r not in ROUTERS]:
        print(f"tierserve: unknown replica router(s) {unknown}; known: {list(ROUTERS)}")
        return 2
    plan = ReplicaRouterPlan(profile=args.profile, tier=args.tier, routers=routers, sessions=args.sessions,
                             turns=args.turns, rounds=args.rounds, max_tokens=args.max_tokens,
                             system_words=args.system_words, seed=args.seed)
    out = _results_dir(args, "replica-router")
    summary = run_replica_router_bench(plan, out)
    print(table(summary))
    print(f"results in {out}")
    return 0 if all(r["turn_1"]["errors"] + r["turns_2_plus"]["errors"] == 0 for r in summary["runs"]) else 1


def _add_stack_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--profile", default="local-cpu")
    p.add_argument("--tier", default="fast", help="the tier whose model every target serves")
    p.add_argument("--full-graph", action="store_true", help="deploy every tier, not only --tier")
    p.add_argument("--serve-port", type=int, default=8100, help="Serve HTTP port of the bench's own Ray")
    p.add_argument("--bare-port", type=int, default=8101)
    p.add_argument("--temp-dir", default="/tmp/ts-bench")
    p.add_argument("--graph-builder", default="app.graph:build_graph",
                   help="module:function(config) building the Tierserve graph to measure")
    p.add_argument("--out", default=str(RESULTS))


def add_loadtest_commands(sub: argparse._SubParsersAction) -> None:
    lt = sub.add_parser("loadtest", help="run a locust scenario headless against the local stack")
    lt.add_argument("scenario", nargs="?", default="mixed", choices=[*SCENARIOS, "matrix"])
    lt.add_argument("--base-url", default=DEFAULT_BASE_URL, help="loopback only")
    lt.add_argument("--api-key", default=None, help="default: $TIERSERVE_API_KEY")
    lt.add_argument("--prompts", default=None, help="JSONL prompt file (default loadtests/prompts.jsonl)")
    lt.add_argument("--duration", type=float, default=None, help="seconds (per cell for matrix)")
    lt.add_argument("--users", type=int, default=None)
    lt.add_argument("--rate", type=float, default=None, help="total requests/s (fixed-rate)")
    lt.add_argument("--steps", default=None, help="users per step, e.g. 1,2,4,8 (ramp)")
    lt.add_argument("--step-s", type=float, default=None)
    lt.add_argument("--hard-share", type=float, default=None)
    lt.add_argument("--max-tokens", type=int, default=None)
    lt.add_argument("--stream", action=argparse.BooleanOptionalAction, default=None)
    lt.add_argument("--session-turns", type=int, default=None)
    lt.add_argument("--model", default=None)
    lt.add_argument("--clients", type=int, default=None,
                    help="simulated clients, each with its own API key created for the run and "
                         "revoked after (closes an open API: see loadtests/clients.py); "
                         "default 0: every user sends as one client")
    lt.add_argument("--admin-key", default=None,
                    help="create the --clients keys through /admin/keys with this admin key "
                         "(default: $TIERSERVE_ADMIN_KEY; none: in the keys database)")
    lt.add_argument("--keys-db", default=None,
                    help="keys database for --clients (default: as `tierserve keys create`)")
    lt.add_argument("--profile", default="local-cpu", help="configs/ profile (where its keys live)")
    lt.add_argument("--concurrency", default="1,2,4,8,16", help="matrix: users per cell")
    lt.add_argument("--payloads", default="short,long", help="matrix: short (64 tok), long (256 tok)")
    lt.add_argument("--out", default=str(RESULTS))
    lt.set_defaults(func=cmd_loadtest)

    bench = sub.add_parser("bench", help="benchmarks that print numbers").add_subparsers(
        dest="bench_cmd", required=True)
    ov = bench.add_parser("overhead", help="Tierserve and ray.serve.llm vs bare vLLM, one run")
    _add_stack_options(ov)
    ov.add_argument("--concurrency", default="1,8,32")
    ov.add_argument("--passes", type=int, default=3)
    ov.add_argument("--max-tokens", type=int, default=64)
    ov.add_argument("--targets", default="bare-vllm,ray-serve-llm,tierserve")
    ov.add_argument("--breakdown", action=argparse.BooleanOptionalAction, default=True,
                    help="time each hop after the passes")
    ov.add_argument("--pinned-variant", action=argparse.BooleanOptionalAction, default=False,
                    help="re-measure with the HTTP front ends pinned off the engine's core")
    ov.set_defaults(func=cmd_bench_overhead)
    rt = bench.add_parser("router", help="router decision latency (in process)")
    rt.add_argument("--profile", default="local-cpu")
    rt.add_argument("-n", type=int, default=2000)
    rt.add_argument("--artifact", help="time this scorer artifact instead of the configured one")
    rt.add_argument("--out", default=str(RESULTS))
    rt.set_defaults(func=cmd_bench_router)
    tb = bench.add_parser("tiering", help="quality vs cost: all-fast, all-reasoning and auto, live")
    tb.add_argument("--profile", default="local-cpu")
    tb.add_argument("-n", type=int, default=0,
                    help="held-out labelled prompts to replay (0: all of them, ~3,300; fewer are noisy)")
    tb.add_argument("--concurrency", type=int, default=4)
    tb.add_argument("--max-tokens", type=int, default=16)
    tb.add_argument("--seed", type=int, default=0)
    tb.add_argument("--out", default=str(RESULTS))
    tb.set_defaults(func=cmd_bench_tiering)
    fb = bench.add_parser("faults", help="replicas killed, Redis hung, under streaming load: lost, migrated")
    fb.add_argument("--profile", default="local-cpu")
    fb.add_argument("--concurrency", type=int, default=8)
    fb.add_argument("--phase-s", type=float, default=30, help="seconds of load per fault")
    fb.add_argument("--kill-after-s", type=float, default=8)
    fb.add_argument("--max-tokens", type=int, default=64)
    fb.add_argument("--phases", default="none,kill:fast,kill:reasoning,hang:redis,redeploy")
    fb.add_argument("--hang-s", type=float, default=10, help="how long hang:redis stops Redis")
    fb.add_argument("--out", default=str(RESULTS))
    fb.set_defaults(func=cmd_bench_faults)
    el = bench.add_parser("elastic", help="multi-node loopback cluster: scale-up/down, cold start "
                                          "from zero, node kill")
    el.add_argument("--profile", default="local-elastic")
    el.add_argument("--nodes", type=int, default=3, help="worker nodes (pools dealt round-robin)")
    el.add_argument("--low", type=int, default=2, help="streams before and after the load step")
    el.add_argument("--high", type=int, default=12, help="streams during the load step")
    el.add_argument("--policy", choices=["ongoing_requests", "queue_depth"],
                    help="the fast tier's autoscaling policy (default: the profile's)")
    el.add_argument("--scale-timeout-s", type=float, default=300,
                    help="how long to wait for a scale-up, scale-down or node recovery")
    el.add_argument("--phase-s", type=float, default=20)
    el.add_argument("--clients", type=int, default=None,
                    help="API keys the streams send with, one per running stream (default: as many "
                         "as the most streams at once; 1: every stream is one client)")
    el.add_argument("--max-tokens", type=int, default=32)
    el.add_argument("--out", default=str(RESULTS))
    el.set_defaults(func=cmd_bench_elastic)
    rr = bench.add_parser("replica-router", help="multi-turn TTFT of a two-replica tier with each "
                                                 "replica router (power-of-two, prefix-cache affinity)")
    rr.add_argument("--profile", default="local-cpu")
    rr.add_argument("--tier", default="fast", help="the tier run at two replicas (others suspended)")
    rr.add_argument("--routers", default="power_of_two,prefix_cache_affinity")
    rr.add_argument("--sessions", type=int, default=8, help="conversations at once")
    rr.add_argument("--turns", type=int, default=6, help="turns per conversation")
    rr.add_argument("--rounds", type=int, default=6, help="fresh sessions, one round after another")
    rr.add_argument("--max-tokens", type=int, default=16)
    rr.add_argument("--system-words", type=int, default=120,
                    help="words of the system prompt every session shares (0: none)")
    rr.add_argument("--seed", type=int, default=0)
    rr.add_argument("--out", default=str(RESULTS))
    rr.set_defaults(func=cmd_bench_replica_router)
    cs = bench.add_parser("cold-start", help="deploy-to-ready: one tier vs bare vLLM")
    _add_stack_options(cs)
    cs.set_defaults(func=cmd_bench_cold_start)
