"""The tiers as the console shows them: config, Serve's replica states, replicas per node.

Read on demand (only while someone has the console open), off the event loop: Serve's
status comes from its controller, the replicas' nodes from Ray's state API.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from pydantic import BaseModel, Field

from app.config.schema import TierserveConfig
from app.console import engine_stats
from app.console.engine_stats import EngineStats

log = logging.getLogger("ray.serve.tierserve.console")


class ReplicaView(BaseModel):
    actor_id: str
    node_id: str | None = None
    node_ip: str | None = None
    state: str
    pid: int | None = None


class TierView(BaseModel):
    name: str
    description: str = ""
    served_model_name: str
    model_source: str
    deployment: str
    status: str = "UNKNOWN"  # Serve's deployment status
    message: str = ""
    replica_states: dict[str, int] = Field(default_factory=dict)
    replicas: list[ReplicaView] = Field(default_factory=list)
    nodes: dict[str, int] = Field(default_factory=dict)  # node ip -> alive replicas
    min_replicas: int
    max_replicas: int
    target_ongoing_requests: float
    max_ongoing_requests: int
    max_queued_requests: int
    max_model_len: int
    cost_per_1k_tokens: float
    suspended: bool = False
    node_pool: str | None = None
    engines: EngineStats | None = None  # vLLM's gauges: running, waiting, KV-cache use


def _serve_status(app_name: str) -> Any:
    from ray import serve

    return serve.status().applications.get(app_name)


def _replica_actors(app_name: str) -> list[dict[str, Any]]:
    """Alive Serve replica actors of `app_name`, with their nodes (Ray's state API)."""
    import ray
    from ray.util.state import list_actors

    # This cluster's address, never "auto": another Ray on the machine would make that ambiguous.
    address = ray.get_runtime_context().gcs_address
    prefix = f"ServeReplica:{app_name}:"
    actors = [a for a in list_actors(address=address, filters=[("state", "=", "ALIVE")], limit=10_000,
                                     timeout=5)
              if (a.class_name or "").startswith(prefix)]
    ips = {n["NodeID"]: n["NodeManagerAddress"] for n in ray.nodes()}
    return [{"deployment": a.class_name[len(prefix):], "actor_id": a.actor_id, "node_id": a.node_id,
             "node_ip": ips.get(a.node_id or ""), "state": a.state, "pid": a.pid} for a in actors]


async def tier_views(config: TierserveConfig, app_name: str, suspended: set[str]) -> list[TierView]:
    status, actors, engines = await asyncio.gather(asyncio.to_thread(_serve_status, app_name),
                                                   asyncio.to_thread(_replica_actors, app_name),
                                                   asyncio.to_thread(engine_stats.read),
                                                   return_exceptions=True)
    if isinstance(engines, BaseException):
        log.warning("console: could not read the engines' metrics: %r", engines)
        engines = {}
    if isinstance(status, BaseException):
        log.warning("console: could not read Serve status: %r", status)
        status = None
    if isinstance(actors, BaseException):
        log.warning("console: could not list replica actors: %r", actors)
        actors = []
    views = []
    for tier in config.tiers:
        auto = tier.autoscaling
        view = TierView(
            name=tier.name, description=tier.description, served_model_name=tier.served_model_name,
            model_source=tier.model_source, deployment=tier.deployment_name,
            min_replicas=auto.min_replicas, max_replicas=auto.max_replicas,
            target_ongoing_requests=auto.target_ongoing_requests,
            max_ongoing_requests=tier.max_ongoing_requests,
            max_queued_requests=tier.max_queued_requests, max_model_len=tier.max_model_len,
            cost_per_1k_tokens=tier.cost_per_1k_tokens, suspended=tier.name in suspended,
            node_pool=getattr(tier.resources, "node_pool", None))
        view.engines = engines.get(tier.served_model_name)
        dep = status.deployments.get(tier.deployment_name) if status is not None else None
        if dep is not None:
            view.status = str(getattr(dep.status, "value", dep.status))  # "HEALTHY", not the enum
            view.message = dep.message or ""
            view.replica_states = {str(getattr(k, "value", k)): int(v) for k, v in dep.replica_states.items()}
        for actor in actors:
            if actor["deployment"] == tier.deployment_name:
                replica = ReplicaView.model_validate(actor)
                view.replicas.append(replica)
                node = replica.node_ip or replica.node_id or "?"
                view.nodes[node] = view.nodes.get(node, 0) + 1
        views.append(view)
    return views
