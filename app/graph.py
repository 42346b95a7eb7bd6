"""The composition root: config -> tiers -> router -> ingress, as one bound Serve app.

`serve_config.yaml` points at `build_app`; tests can inspect the bound graph
without starting anything.
"""

from __future__ import annotations

import logging
from typing import Any

from pydantic import BaseModel, ConfigDict
from ray import serve
from ray.serve.deployment import Application
from ray.serve.llm import LLMConfig, build_llm_deployment

from app.config.loader import load_config
from app.config.operations import TracingConfig
from app.config.schema import TierConfig, TierserveConfig, pool_demand
from app.serve_config import OFFLINE_ENV, config_digest

logger = logging.getLogger(__name__)


class AppArgs(BaseModel):
    """`args:` of the Serve application in serve_config.yaml."""

    model_config = ConfigDict(extra="forbid")
    profile: str = "local-cpu"
    # What the profile's files hashed to when serve_config.yaml was rendered: a changed config
    # is a changed app for Serve, so `serve deploy` rolls it out (app/serve_config.py).
    config_digest: str | None = None


def llm_config_for(tier: TierConfig, tracing: TracingConfig | None = None) -> LLMConfig:
    res = tier.resources
    env = {**OFFLINE_ENV, **tier.env} if res.accelerator == "cpu" else dict(tier.env)
    engine_kwargs = {**tier.engine_kwargs, "max_model_len": tier.max_model_len}
    endpoint = tracing.resolved_endpoint() if tracing is not None and tracing.engine_spans else None
    if endpoint:  # vLLM's own span per request (queue, prefill, decode), below the tier's span
        engine_kwargs["otlp_traces_endpoint"] = endpoint
        env["OTEL_EXPORTER_OTLP_TRACES_PROTOCOL"] = "http/protobuf"
    kwargs: dict[str, Any] = dict(
        model_loading_config={"model_id": tier.served_model_name, "model_source": tier.model_source},
        engine_kwargs=engine_kwargs,
        runtime_env={"env_vars": env},
        deployment_config={
            "autoscaling_config": tier.autoscaling.to_serve(),
            "max_ongoing_requests": tier.max_ongoing_requests,
            "max_queued_requests": tier.max_queued_requests,
            **tier.rollout.serve_options(),
            "ray_actor_options": {"num_cpus": res.num_cpus, "resources": res.pool_demand()},
            **replica_router_options(tier),
        },
        # TierServer streams its own way (first chunk at once); no fixed batching.
        experimental_configs={"stream_batching_interval_ms": 0},
        log_engine_metrics=True,
        # No model-download task before the engine for a model already on the node
        # (deployments/engine_init.py): a fresh Ray worker's imports, ~5 s per replica start.
        callback_config={"callback_class": "deployments.engine_init:LocalModelInit"},
    )
    if res.node_pool:
        # Every engine bundle asks for the pool too (ray.serve.llm's default bundles do not),
        # so no worker of a tensor-parallel engine lands outside it.
        device = {"GPU": 1} if res.accelerator == "gpu" else {"CPU": 1}
        kwargs["placement_group_config"] = {"bundle_per_worker": {**device, **res.pool_demand()}}
    if res.accelerator == "cpu":
        kwargs["accelerator_config"] = {"kind": "cpu"}
    elif res.accelerator_type:
        kwargs["accelerator_type"] = res.accelerator_type
    return LLMConfig(**kwargs)


PREFIX_CACHE_ROUTER = "ray.serve.llm.request_router:PrefixCacheAffinityRouter"


def replica_router_options(tier: TierConfig) -> dict[str, Any]:
    """Serve's request_router_config for the tier's replica router (none: Serve's default)."""
    if tier.replica_router == "prefix_cache_affinity":
        router: dict[str, Any] = {"request_router_class": PREFIX_CACHE_ROUTER}
        if tier.prefix_cache_affinity and (kwargs := tier.prefix_cache_affinity.router_kwargs()):
            router["request_router_kwargs"] = kwargs  # the router's initialize_state(**kwargs)
        return {"request_router_config": router}
    return {}


def build_tier(tier: TierConfig, tracing: TracingConfig | None = None) -> Application:
    from deployments.tier import TierServer

    return build_llm_deployment(
        llm_config_for(tier, tracing), deployment_cls=TierServer,
        bind_kwargs={"tier": tier, "tracing": tracing},
        override_serve_options={"name": tier.deployment_name},
    )


def build_graph(config: TierserveConfig) -> Application:
    from deployments.ingress import Ingress
    from deployments.router import Router

    tiers = {t.name: build_tier(t, config.server.tracing) for t in config.tiers}
    server = config.server
    # The control plane's own pool (if the profile names one): never on a model node.
    system = {"num_cpus": 0, "resources": pool_demand(server.node_pool)}
    router = serve.deployment(name="router", num_replicas=server.router_replicas,
                              ray_actor_options=system,
                              **server.rollout.serve_options())(Router).bind(config)
    ingress = serve.deployment(name="ingress", num_replicas=server.ingress_replicas,
                               max_ongoing_requests=server.max_in_flight * 2,
                               ray_actor_options=system, **server.rollout.serve_options())(Ingress)
    return ingress.bind(config, router, tiers)


def build_app(args: dict[str, Any]) -> Application:
    """Serve's application builder: `import_path: app.graph:build_app`."""
    app_args = AppArgs.model_validate(args or {})
    if app_args.config_digest not in (None, digest := config_digest(app_args.profile)):
        logger.warning("serve config was rendered from other configs/ files (digest %s) than this "
                       "node has (%s): the node's files are deployed", app_args.config_digest, digest)
    return build_graph(load_config(app_args.profile))
