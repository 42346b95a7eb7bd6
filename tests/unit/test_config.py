"""Config loading: both profiles load; mistakes name the file and the field."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
import yaml

from app.config import ConfigError, load_config
from app.config.loader import REPO_ROOT, list_profiles
from app.config.schema import TierConfig


@pytest.fixture
def config_copy(tmp_path: Path) -> Path:
    shutil.copytree(REPO_ROOT / "configs", tmp_path / "configs")
    return tmp_path / "configs"


def _edit(path: Path, fn) -> None:
    data = yaml.safe_load(path.read_text())
    fn(data)
    path.write_text(yaml.safe_dump(data))


def test_profiles_load():
    assert list_profiles() == ["gpu", "gpu-t4", "local-cpu", "local-cpu-3tier", "local-cpu-costaware",
                             "local-elastic"]
    cpu, gpu = load_config("local-cpu"), load_config("gpu")
    assert [t.name for t in cpu.tiers] == [t.name for t in gpu.tiers] == ["fast", "reasoning"]
    assert all(t.resources.accelerator == "cpu" and t.resources.num_gpus == 0 for t in cpu.tiers)
    assert all(t.resources.num_gpus == 1 for t in gpu.tiers)
    # Local model paths are made absolute against the repo; hub ids are left alone.
    assert Path(cpu.tier("fast").model_source) == REPO_ROOT / "models" / "tiny-fast"
    assert gpu.tier("fast").model_source == "Qwen/Qwen2.5-1.5B-Instruct"


def test_profile_overrides_shared_server_keys():
    assert load_config("gpu").server.ingress_replicas == 2
    assert load_config("local-cpu").server.ingress_replicas == 1


def test_a_profile_naming_another_plugin_replaces_its_params():
    shared = load_config("local-cpu").routing.plugins.picker
    own = load_config("local-cpu-costaware").routing.plugins.picker
    assert shared is not None and shared.name == "cost-budget" and "target_cost_share" in shared.params
    assert own is not None and own.name == "cost-ladder" and own.params == {"completion_tokens": 64}


def test_typo_in_tier_names_profile_file_and_field(config_copy: Path):
    prof = config_copy / "profiles" / "local-cpu.yaml"
    _edit(prof, lambda d: d["tiers"][0].update(max_model_lenn=10))
    with pytest.raises(ConfigError) as err:
        load_config("local-cpu", config_copy)
    msg = str(err.value)
    assert str(prof) in msg and "tiers.0.max_model_lenn" in msg and "Extra inputs" in msg


def test_bad_routing_value_names_routing_file(config_copy: Path):
    _edit(config_copy / "routing.yaml", lambda d: d.update(threshold=1.5))
    with pytest.raises(ConfigError) as err:
        load_config("local-cpu", config_copy)
    assert f"{config_copy / 'routing.yaml'}: routing.threshold" in str(err.value)


def test_rule_naming_unknown_tier_is_rejected(config_copy: Path):
    _edit(config_copy / "routing.yaml", lambda d: d["rules"][0].update(tier="giant"))
    with pytest.raises(ConfigError, match="unknown tier 'giant'"):
        load_config("local-cpu", config_copy)


def test_gpu_tier_without_gpus_is_rejected(config_copy: Path):
    _edit(config_copy / "profiles" / "gpu.yaml",
          lambda d: d["tiers"][1]["resources"].update(num_gpus=0))
    with pytest.raises(ConfigError, match="needs num_gpus > 0"):
        load_config("gpu", config_copy)


def test_autoscaling_bounds_are_checked(config_copy: Path):
    _edit(config_copy / "profiles" / "local-cpu.yaml",
          lambda d: d["tiers"][0]["autoscaling"].update(min_replicas=3, max_replicas=1))
    with pytest.raises(ConfigError, match="min_replicas must be <= max_replicas"):
        load_config("local-cpu", config_copy)


def test_invalid_yaml_and_unknown_profile(config_copy: Path):
    (config_copy / "server.yaml").write_text("rate_limit: [unclosed\n")
    with pytest.raises(ConfigError, match="server.yaml: not valid YAML"):
        load_config("local-cpu", config_copy)
    with pytest.raises(ConfigError, match="unknown profile 'tpu'"):
        load_config("tpu", config_copy)


def test_models_dir_env_relocates_local_models(monkeypatch, tmp_path: Path):
    monkeypatch.setenv("TIERSERVE_MODELS_DIR", str(tmp_path))
    assert load_config("local-cpu").tier("reasoning").model_source == str(tmp_path / "tiny-reasoning")


def test_ray_serve_runtime_env_follows_the_switches():
    from app.config.schema import SERVE_HTTP_MIDDLEWARES, RayServeRuntime

    on = RayServeRuntime().env(9101, 8404)
    assert on["RAY_SERVE_THROUGHPUT_OPTIMIZED"] == "1" and on["RAY_SERVE_ENABLE_HA_PROXY"] == "1"
    assert on["RAY_SERVE_HAPROXY_METRICS_PORT"] == "9101"
    assert on["RAY_SERVE_HAPROXY_STATS_PORT"] == "8404"
    assert on["RAY_SERVE_REQUEST_PATH_LOG_BUFFER_SIZE"] == "1"
    assert on["RAY_SERVE_HAPROXY_HARD_STOP_AFTER_S"] == "1800"  # open streams outlive a reload
    assert on["RAY_SERVE_DIRECT_INGRESS_MIN_DRAINING_PERIOD_S"] == "5"  # not Ray's 30 s
    direct_only = RayServeRuntime(haproxy=False, ingress_deregister_s=2.5).env()
    assert direct_only["RAY_SERVE_DIRECT_INGRESS_MIN_DRAINING_PERIOD_S"] == "2.5"
    off = RayServeRuntime(throughput_optimized=False, haproxy=False).env(9101, 8404)
    assert off == {"RAY_SERVE_THROUGHPUT_OPTIMIZED": "0", "RAY_SERVE_ENABLE_HA_PROXY": "0",
                   "RAY_SERVE_REQUEST_PATH_LOG_BUFFER_SIZE": "1", "RAY_worker_niceness": "0",
                   "RAY_SERVE_HTTP_PROXY_CALLBACK_IMPORT_PATH": SERVE_HTTP_MIDDLEWARES}


def test_serve_reads_the_ingress_deregistration_window_from_our_env():
    """Ray reads the window once per process at import: the name we set is the one it reads."""
    import subprocess
    import sys

    from app.config.schema import RayServeRuntime

    env = {**os.environ, **RayServeRuntime(ingress_deregister_s=7).env()}
    done = subprocess.run(
        [sys.executable, "-c", "from ray.serve._private import constants as c; "
         "print(c.RAY_SERVE_ENABLE_DIRECT_INGRESS, c.RAY_SERVE_DIRECT_INGRESS_MIN_DRAINING_PERIOD_S)"],
        env=env, capture_output=True, text=True, check=True)
    assert done.stdout.split()[-2:] == ["True", "7.0"]


def test_serve_loads_the_request_id_bound_from_the_callback_path():
    # Ray Serve's own loader and check, as its HTTP servers run them at start.
    from ray.serve._private.http_util import validate_http_proxy_callback_return
    from ray.serve._private.utils import call_function_from_import_path

    from app.config.schema import SERVE_HTTP_MIDDLEWARES
    from app.http.request_id import RequestIdMiddleware

    middlewares = validate_http_proxy_callback_return(call_function_from_import_path(SERVE_HTTP_MIDDLEWARES))
    assert [m.cls for m in middlewares] == [RequestIdMiddleware]


def test_coalesce_cap_below_base_is_rejected():
    import pydantic

    base = load_config("local-cpu").tiers[0].model_dump()
    base.update(stream_coalesce_ms=50, stream_coalesce_max_ms=10)
    with pytest.raises(pydantic.ValidationError, match="stream_coalesce_max_ms"):
        TierConfig.model_validate(base)


def _affinity_router(**settings):
    def edit(d):
        d["tiers"][0].update(replica_router="prefix_cache_affinity", prefix_cache_affinity=settings)
    return edit


def test_prefix_cache_affinity_settings_are_typed(config_copy: Path):
    prof = config_copy / "profiles" / "local-cpu.yaml"
    _edit(prof, _affinity_router(imbalanced_threshold=4, match_rate_threshold=0.2, do_eviction=True))
    fast = load_config("local-cpu", config_copy).tier("fast")
    assert fast.prefix_cache_affinity.router_kwargs() == {
        "imbalanced_threshold": 4, "match_rate_threshold": 0.2, "do_eviction": True}


def test_unknown_prefix_cache_affinity_setting_is_rejected_with_the_known_ones(config_copy: Path):
    prof = config_copy / "profiles" / "local-cpu.yaml"
    _edit(prof, _affinity_router(imbalance_threshold=4))
    with pytest.raises(ConfigError) as err:
        load_config("local-cpu", config_copy)
    msg = str(err.value)
    assert str(prof) in msg and "tiers.0.prefix_cache_affinity" in msg
    assert "['imbalance_threshold']" in msg and "imbalanced_threshold" in msg  # the known list


@pytest.mark.parametrize(("settings", "error"), [
    ({"match_rate_threshold": 1.5}, "less than or equal to 1"),
    ({"imbalanced_threshold": -1}, "greater than or equal to 0"),
    ({"eviction_target_chars": 500_000}, "eviction_target_chars \\(500000\\) must be <="),
])
def test_bad_prefix_cache_affinity_values_are_rejected(config_copy: Path, settings, error):
    _edit(config_copy / "profiles" / "local-cpu.yaml", _affinity_router(**settings))
    with pytest.raises(ConfigError, match=error):
        load_config("local-cpu", config_copy)


def test_prefix_cache_affinity_settings_need_that_router(config_copy: Path):
    _edit(config_copy / "profiles" / "local-cpu.yaml",
          lambda d: d["tiers"][0].update(prefix_cache_affinity={"imbalanced_threshold": 4}))
    with pytest.raises(ConfigError, match="need replica_router: prefix_cache_affinity"):
        load_config("local-cpu", config_copy)
