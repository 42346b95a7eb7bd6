"""One source of truth: serve_config.yaml and the bound graph come from configs/."""

from __future__ import annotations

import yaml

from app.config import load_config
from app.config.loader import REPO_ROOT, list_profiles
from app.config.schema import POOL_SHARE, AutoscalingConfig
from app.graph import build_app, llm_config_for
from app.serve_config import config_digest, render_serve_config
from tooling.cli import main, render_text


def test_serve_config_yaml_matches_configs():
    committed = (REPO_ROOT / "serve_config.yaml").read_text()
    assert committed == render_text("local-cpu"), "run `tierserve config render`"
    doc = yaml.safe_load(committed)
    (app,) = doc["applications"]
    assert app["import_path"] == "app.graph:build_app"
    assert app["args"] == {"profile": "local-cpu", "config_digest": config_digest("local-cpu")}


def test_a_changed_config_file_is_a_changed_app_for_serve(tmp_path, monkeypatch):
    # Serve rolls an app out again only when its args (or import path, runtime env) change.
    import shutil

    from ray.serve._private.deploy_utils import get_app_code_version
    from ray.serve.schema import ServeApplicationSchema

    def code_version() -> str:
        (app,) = render_serve_config(load_config("local-cpu"))["applications"]
        return get_app_code_version(ServeApplicationSchema.model_validate(app))

    shutil.copytree(REPO_ROOT / "configs", tmp_path / "configs")
    monkeypatch.setenv("TIERSERVE_CONFIG_DIR", str(tmp_path / "configs"))
    before = code_version()
    assert code_version() == before  # rendering is stable
    routing = tmp_path / "configs" / "routing.yaml"
    routing.write_text(routing.read_text().replace("allow_tier_header: true", "allow_tier_header: false"))
    assert code_version() != before


def test_a_new_scorer_or_threshold_is_a_router_reconfigure_not_a_rebuild(tmp_path, monkeypatch):
    # `route-promote` changes only live routing settings: the app's code version stays, so Serve
    # applies the router's new user_config in place (reconfigure) and restarts no replica.
    import shutil

    from ray.serve._private.deploy_utils import get_app_code_version
    from ray.serve.schema import ServeApplicationSchema

    from app.config.live import apply_router_user_config
    from tooling.routeops.promote import set_learned

    def rendered() -> dict:
        (app,) = render_serve_config(load_config("local-cpu"))["applications"]
        return app

    shutil.copytree(REPO_ROOT / "configs", tmp_path / "configs")
    monkeypatch.setenv("TIERSERVE_CONFIG_DIR", str(tmp_path / "configs"))
    before = rendered()
    routing = tmp_path / "configs" / "routing.yaml"
    set_learned(routing, "artifact", "app/routing/artifacts/complexity_embed.json")
    set_learned(routing, "shadow_artifact", "app/routing/artifacts/complexity.json")
    routing.write_text(routing.read_text().replace("threshold: ", "threshold: 0.4 #", 1))
    after = rendered()
    code = lambda app: get_app_code_version(ServeApplicationSchema.model_validate(app))  # noqa: E731
    assert code(after) == code(before)
    (router,) = after["deployments"]
    assert router["name"] == "router" and router != before["deployments"][0]
    live = apply_router_user_config(load_config("local-cpu"), router["user_config"]).routing
    assert live.learned.artifact.endswith("complexity_embed.json")
    assert live.learned.shadow_artifact.endswith("complexity.json")
    assert live.thresholds == [0.4]


def test_every_deployment_rolls_out_with_surge_and_drains_its_streams():
    config = load_config("local-cpu")
    deps = _deployments(build_app({"profile": "local-cpu"}))
    rollouts = {"ingress": config.server.rollout, "router": config.server.rollout,
                **{t.deployment_name: t.rollout for t in config.tiers}}
    for name, rollout in rollouts.items():
        options = deps[name]._deployment_config
        assert options.max_surge_percent == rollout.max_surge_percent == 100, name
        assert options.graceful_shutdown_timeout_s == rollout.drain_timeout_s, name
        assert rollout.drain_timeout_s >= max(t.request_timeout_s for t in config.tiers)
    assert config.server.ray_serve.haproxy_drain_s >= config.server.rollout.drain_timeout_s


def test_serve_shutdown_fits_in_its_clients_timeout():
    """Serve stops the ingress first and the router and tiers only once it has gone, all
    within serve.shutdown()'s 30 s (the dashboard's, under `serve shutdown`); the ingress's
    deregistration window plus each later drain check must leave room for the engines' exit."""
    import inspect

    from ray.serve._private.client import ServeControllerClient

    client_timeout_s = inspect.signature(ServeControllerClient.shutdown).parameters["timeout_s"].default
    for profile in list_profiles():
        config = load_config(profile)
        checks = [config.server.rollout, *(t.rollout for t in config.tiers)]
        drain_s = config.server.ray_serve.ingress_deregister_s + max(r.drain_poll_s for r in checks)
        assert drain_s <= client_timeout_s / 3, (profile, drain_s)


def test_a_digest_from_other_files_is_deployed_with_a_warning(caplog):
    with caplog.at_level("WARNING", logger="app.graph"):
        build_app({"profile": "local-cpu", "config_digest": "0" * 16})
    assert "other configs/ files" in caplog.text


def test_render_check_fails_on_drift(tmp_path, capsys):
    out = tmp_path / "serve_config.yaml"
    out.write_text(render_text("local-cpu").replace("local-cpu", "gpu"))
    assert main(["config", "render", "--check", "--out", str(out)]) == 1
    assert main(["config", "render", "--out", str(out)]) == 0
    assert main(["config", "render", "--check", "--out", str(out)]) == 0


def _deployments(app) -> dict:
    """name -> deployment, walking the bound graph without starting Ray."""
    found = {}

    def visit(node):
        if hasattr(node, "_bound_deployment"):
            dep = node._bound_deployment
            found[dep.name] = dep
            for arg in [*dep.init_args, *dep.init_kwargs.values()]:
                for child in (arg.values() if isinstance(arg, dict) else [arg]):
                    visit(child)

    visit(app)
    return found


def test_bound_graph_follows_the_profile():
    config = load_config("local-cpu")
    deps = _deployments(build_app({"profile": "local-cpu"}))
    assert set(deps) == {"ingress", "router", "tier-fast", "tier-reasoning"}
    for tier in config.tiers:
        dep = deps[f"tier-{tier.name}"]
        assert dep.max_ongoing_requests == tier.max_ongoing_requests
        assert dep._deployment_config.max_queued_requests == tier.max_queued_requests
        auto = dep._deployment_config.autoscaling_config
        assert (auto.min_replicas, auto.max_replicas) == (tier.autoscaling.min_replicas,
                                                          tier.autoscaling.max_replicas)
    assert deps["ingress"].ray_actor_options["num_cpus"] == 0


def test_llm_config_per_tier():
    tier = load_config("local-cpu").tier("reasoning")
    cfg = llm_config_for(tier)
    assert cfg.model_id == "tiny-reasoning"
    assert cfg.engine_kwargs["max_model_len"] == 4096
    assert cfg.accelerator_config.kind == "cpu"
    assert cfg.experimental_configs["stream_batching_interval_ms"] == 0
    assert cfg.runtime_env["env_vars"]["HF_HUB_OFFLINE"] == "1"
    gpu = llm_config_for(load_config("gpu").tier("reasoning"))
    assert gpu.accelerator_config is None or gpu.accelerator_config.kind != "cpu"


def test_a_tier_with_a_node_pool_asks_for_it_in_every_bundle():
    for profile in ("local-elastic", "gpu"):
        for tier in load_config(profile).tiers:
            pool = tier.resources.node_pool
            assert pool
            cfg = llm_config_for(tier)
            assert cfg.deployment_config["ray_actor_options"]["resources"] == {pool: POOL_SHARE}
            assert cfg.placement_group_config["bundle_per_worker"][pool] == POOL_SHARE


def test_a_suspended_tier_is_a_deployment_that_stays_at_zero():
    auto = AutoscalingConfig(min_replicas=0, max_replicas=0)
    assert auto.suspended
    assert auto.to_serve()["max_replicas"] == 1  # Serve's floor; nothing ever calls the tier
    assert (auto.to_serve()["min_replicas"], auto.to_serve()["initial_replicas"]) == (0, 0)


def test_a_tier_may_route_replicas_by_prefix_cache_affinity():
    from app.protocol.internal import TierCall

    tier = load_config("local-elastic").tier("fast")
    assert "request_router_config" not in llm_config_for(tier).deployment_config
    cfg = llm_config_for(tier.model_copy(update={"replica_router": "prefix_cache_affinity"}))
    assert cfg.deployment_config["request_router_config"]["request_router_class"].endswith(
        ":PrefixCacheAffinityRouter")
    # What that router reads from a call, by attribute: only the one the body has.
    chat = TierCall(request_id="r", endpoint="chat", body={"messages": [{"role": "user", "content": "x"}]})
    assert chat.messages[0]["content"] == "x" and not hasattr(chat, "prompt")
    completion = TierCall(request_id="r", endpoint="completion", body={"prompt": "y"})
    assert completion.prompt == "y" and not hasattr(completion, "messages")


def test_prefix_cache_affinity_settings_reach_rays_router_as_its_kwargs():
    import inspect

    from ray.serve.config import RequestRouterConfig
    from ray.serve.llm.request_router import PrefixCacheAffinityRouter

    from app.config.schema import PrefixCacheAffinityConfig

    fast = load_config("local-elastic").tier("fast")
    plain = fast.model_copy(update={"replica_router": "prefix_cache_affinity"})
    assert "request_router_kwargs" not in llm_config_for(plain).deployment_config["request_router_config"]
    tuned = fast.model_copy(update={"replica_router": "prefix_cache_affinity",
                                    "prefix_cache_affinity": PrefixCacheAffinityConfig(
                                        imbalanced_threshold=4, match_rate_threshold=0.25)})
    router = llm_config_for(tuned).deployment_config["request_router_config"]
    assert router["request_router_kwargs"] == {"imbalanced_threshold": 4, "match_rate_threshold": 0.25}
    # Serve's own model takes it, and every setting is a keyword of the router Ray ships.
    assert RequestRouterConfig(**router).request_router_kwargs == router["request_router_kwargs"]
    accepted = inspect.signature(PrefixCacheAffinityRouter.initialize_state).parameters
    assert set(PrefixCacheAffinityConfig.model_fields) <= set(accepted) - {"self", "tree_actor"}


def test_up_on_another_port_deploys_a_copy_that_serves_there(tmp_path) -> None:
    from tooling.cli import _on_port

    shipped = REPO_ROOT / "serve_config.yaml"
    assert _on_port(shipped, 8000, tmp_path) == shipped  # the port it names: deployed as is
    moved = _on_port(shipped, 8100, tmp_path / "stack")
    doc, original = yaml.safe_load(moved.read_text()), yaml.safe_load(shipped.read_text())
    assert doc["http_options"]["port"] == 8100  # where `tierserve up --port 8100` waits for it
    assert doc["applications"] == original["applications"]
