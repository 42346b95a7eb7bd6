"""`tierserve cluster up|down`: Tierserve on a multi-node Ray cluster on this machine."""

from __future__ import annotations

import argparse
import json
import time

from app.config.loader import load_config
from tooling import local_cluster as lc

DEFAULT_PROFILE = "local-elastic"


def cmd_cluster_up(args: argparse.Namespace) -> int:
    from tooling.cluster import start_cluster
    from tooling.tier_replicas import replicas_by_tier, tier_replicas

    config = load_config(args.profile)
    stack = lc.LocalStack(serve_port=args.port)
    started = time.monotonic()
    try:
        token, workers = start_cluster(config, stack, args.nodes)
        state = lc.wait_ready(stack.base_url, args.timeout)
    except lc.StackError as exc:
        raise lc.StackError(f"{exc}\n  logs: {stack.temp_dir}/session_latest/logs/; "
                            "stop the cluster with `tierserve cluster down`") from exc
    print(f"Tierserve on a {1 + len(workers)}-node Ray cluster (profile {config.profile}) is ready "
          f"in {time.monotonic() - started:.0f}s: {state['tiers']}")
    print(f"  head:           no model, {stack.dashboard_url} (Ray dashboard)")
    for i, node in enumerate(workers, 1):
        print(f"  worker {i}:       {node.spec.pool}, {node.spec.num_cpus} logical CPUs, "
              f"raylet pid {node.raylet_pid}")
    print(f"  OpenAI API:     {stack.base_url}/v1")
    if token:
        print(f"  Ray auth token: {token}")
    print("  replicas:       " + json.dumps(replicas_by_tier(tier_replicas(stack.dashboard_url, config))))
    print("\nSee it with `tierserve status`; stop it with `tierserve cluster down`.")
    return 0


def cmd_cluster_down(args: argparse.Namespace) -> int:
    stack = lc.LocalStack()
    nodes = len(lc.raylets(stack))
    removed = lc.stop(stack)
    print(f"stopped {nodes} Ray node(s) of {stack.temp_dir}"
          + (f"; removed {len(removed)} shared-memory segment(s)" if removed else ""))
    return 0


def add_cluster_commands(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    cluster = subparsers.add_parser("cluster", help="a multi-node Ray cluster on this machine (loopback)")
    sub = cluster.add_subparsers(dest="cluster_command", required=True)
    up = sub.add_parser("up", help="head (no model) + N worker nodes, one per node pool, then deploy")
    up.add_argument("--nodes", type=int, default=2, help="worker nodes (pools dealt round-robin)")
    up.add_argument("--profile", default=DEFAULT_PROFILE, help="a profile whose tiers name node pools")
    up.add_argument("--port", type=int, default=8000)
    up.add_argument("--timeout", type=float, default=900)
    up.set_defaults(func=cmd_cluster_up)
    down = sub.add_parser("down", help="stop every node of the cluster, by PID")
    down.set_defaults(func=cmd_cluster_down)
    return cluster
