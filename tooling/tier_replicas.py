"""Where each tier's replicas run: node, node pool and state, read from a running cluster.

Used by `tierserve status` and meant for any other view of the cluster (the console): one
call to Serve's REST API (through the dashboard) and one to Ray's state API, both with Ray's
own clients, so token auth works as it does for `serve deploy`.
"""

from __future__ import annotations

import os

from pydantic import BaseModel

from app.config.schema import TierserveConfig

POOL_PREFIX = "pool_"


class TierReplica(BaseModel):
    """One Serve replica of a tier."""

    tier: str
    replica_id: str
    state: str  # Serve's ReplicaState: STARTING, RUNNING, STOPPING, ...
    node_id: str | None = None
    node_ip: str | None = None
    node_pool: str | None = None  # the pool resource the node advertises, if any
    pid: int | None = None


class NodeInfo(BaseModel):
    node_id: str
    state: str  # ALIVE or DEAD
    is_head: bool
    pools: list[str]
    cpus: float


def _ensure_token_mode() -> None:
    # Ray's clients send the token only when told the mode, read once at import.
    os.environ.setdefault("RAY_AUTH_MODE", "token")


def cluster_nodes(dashboard_url: str) -> list[NodeInfo]:
    """Every Ray node the cluster knows, alive or dead, with the pools it advertises."""
    _ensure_token_mode()
    from ray.util.state import list_nodes

    nodes = []
    for node in list_nodes(address=dashboard_url, detail=True, raise_on_missing_output=False):
        row = node if isinstance(node, dict) else vars(node)
        total = row.get("resources_total") or {}
        nodes.append(NodeInfo(node_id=row["node_id"], state=str(row["state"]),
                              is_head=bool(row.get("is_head_node")),
                              pools=sorted(k for k in total if k.startswith(POOL_PREFIX)),
                              cpus=float(total.get("CPU", 0))))
    return nodes


def tier_replicas(dashboard_url: str, config: TierserveConfig, app_name: str = "tierserve"
                  ) -> list[TierReplica]:
    """Each tier's replicas with their node, node pool and state (tiers in config order)."""
    _ensure_token_mode()
    from ray.dashboard.modules.serve.sdk import ServeSubmissionClient

    details = ServeSubmissionClient(dashboard_url).get_serve_details()
    deployments = ((details.get("applications") or {}).get(app_name) or {}).get("deployments") or {}
    pools = {n.node_id: (n.pools[0] if n.pools else None) for n in cluster_nodes(dashboard_url)}
    out = []
    for tier in config.tiers:
        for rep in (deployments.get(tier.deployment_name) or {}).get("replicas") or []:
            node_id = rep.get("node_id")
            out.append(TierReplica(tier=tier.name, replica_id=rep["replica_id"], state=str(rep["state"]),
                                   node_id=node_id, node_ip=rep.get("node_ip"),
                                   node_pool=pools.get(node_id) if node_id else None, pid=rep.get("pid")))
    return out


def replicas_by_tier(replicas: list[TierReplica]) -> dict[str, list[dict[str, str | None]]]:
    """A compact view for `tierserve status`: per tier, each replica's node, pool and state."""
    view: dict[str, list[dict[str, str | None]]] = {}
    for rep in replicas:
        view.setdefault(rep.tier, []).append(
            {"replica": rep.replica_id, "state": rep.state, "pool": rep.node_pool,
             "node": (rep.node_id or "")[:12] or None})
    return view
