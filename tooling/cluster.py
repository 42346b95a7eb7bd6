"""A multi-node Ray cluster on this machine, on loopback, mirroring the KubeRay layout.

The head runs no model: it advertises only the system pool of the ingress and router, and
every tier asks for its own pool. Each worker node advertises the pool of the tiers it stands
for, like a KubeRay tier worker group.
Tierserve then goes on through the same `serve deploy` path as `tierserve up`. The lifecycle
(ports, auth token, stop by PID) is tooling/local_cluster.py's: `tierserve down` stops it too.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from app.config.schema import TierserveConfig
from app.serve_config import render_serve_config
from tooling import local_cluster as lc

# Small object stores: each node would otherwise take 30% of the machine's memory for one.
OBJECT_STORE_BYTES = 256 * 2**20
# Logical CPUs of the head: Serve's controller and HAProxy; ingress and router ask for none.
HEAD_CPUS = 2


@dataclass(frozen=True)
class WorkerSpec:
    """One worker node: the pool it advertises and its logical CPUs."""

    pool: str
    num_cpus: int


@dataclass
class WorkerNode:
    spec: WorkerSpec
    raylet_pid: int


def pools_of(config: TierserveConfig) -> list[str]:
    """The profile's node pools, in tier order, each once."""
    pools: list[str] = []
    for tier in config.tiers:
        pool = tier.resources.node_pool
        if pool and pool not in pools:
            pools.append(pool)
    return pools


def pool_cpus(config: TierserveConfig, pool: str) -> int:
    """Logical CPUs one node of `pool` needs to hold all of its tiers' replicas at their
    maximum: each replica's actor CPUs plus its engine's CPU bundle (ray.serve.llm on CPU)."""
    need = sum(t.autoscaling.max_replicas * (t.resources.num_cpus + 1)
               for t in config.tiers if t.resources.node_pool == pool)
    return max(1, math.ceil(need))


def plan_workers(config: TierserveConfig, nodes: int) -> list[WorkerSpec]:
    """`nodes` worker nodes, the profile's pools dealt round-robin (tier order), so any
    `nodes >= len(pools)` gives every tier a node and extra nodes add spares."""
    pools = pools_of(config)
    if not pools:
        raise lc.StackError(f"profile {config.profile!r} names no node pools (tiers' resources.node_pool); "
                            "use a pooled profile such as local-elastic")
    if nodes < len(pools):
        raise lc.StackError(f"--nodes {nodes}: profile {config.profile!r} has {len(pools)} node pools "
                            f"({', '.join(pools)}); each needs a node")
    return [WorkerSpec(pool=pools[i % len(pools)], num_cpus=pool_cpus(config, pools[i % len(pools)]))
            for i in range(nodes)]


def cluster_serve_config(config: TierserveConfig, http_port: int) -> dict[str, Any]:
    """The profile's Serve config with the HTTP proxy on the head only: every node here shares
    one address, so a proxy per node would fight over the Serve port."""
    return {**render_serve_config(config, http_port=http_port), "proxy_location": "HeadOnly"}


def start_cluster(config: TierserveConfig, stack: lc.LocalStack,
                  nodes: int) -> tuple[Path | None, list[WorkerNode]]:
    """Head, then `nodes` workers, then `serve deploy`; returns the auth token path and the
    workers (with their raylet PIDs). Does not wait for readiness (lc.wait_ready does)."""
    specs = plan_workers(config, nodes)
    runtime = config.server.ray_serve
    system = config.server.node_pool
    token = lc.start_ray(stack, runtime, resources={system: 1} if system else None,
                         object_store_bytes=OBJECT_STORE_BYTES, loopback=True)
    workers = []
    for spec in specs:
        raylet = lc.start_worker(stack, runtime, num_cpus=spec.num_cpus, resources={spec.pool: 1},
                                 object_store_bytes=OBJECT_STORE_BYTES)
        workers.append(WorkerNode(spec, raylet.pid))
    cfg_file = Path(stack.temp_dir) / "serve_config.yaml"
    cfg_file.write_text(yaml.safe_dump(cluster_serve_config(config, stack.serve_port), sort_keys=False))
    lc.serve_deploy(stack, cfg_file)
    return token, workers


def kill_node(raylet_pid: int) -> list[int]:
    """Kill one worker node as a machine loss would: its raylet and everything under it
    (workers, replicas, vLLM engines), SIGKILL, no goodbye. Returns the PIDs killed."""
    import psutil

    try:
        raylet = psutil.Process(raylet_pid)
        procs = [*raylet.children(recursive=True), raylet]
    except psutil.NoSuchProcess:
        return []
    killed = []
    for proc in procs:
        try:
            proc.kill()
            killed.append(proc.pid)
        except psutil.Error:
            continue
    psutil.wait_procs(procs, timeout=10)
    return killed
