"""Render the KubeRay Helm chart offline, with serveConfigV2 generated from `configs/`.

The chart never holds a copy of the Serve config: this module computes it (and each tier's
worker-group numbers) from the profile and passes them in as the `generated` values, then
renders with Helm's own engine (helm-python-sdk, no binary and no cluster).
"""

from __future__ import annotations

import copy
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from app.config import load_config
from app.config.loader import REPO_ROOT
from app.config.schema import TierConfig, TierserveConfig
from app.serve_config import render_serve_config

CHART_DIR = REPO_ROOT / "kuberay" / "chart"
VALUES_DIR = REPO_ROOT / "kuberay" / "values"
DEFAULT_PROFILE = "gpu"
DEFAULT_RELEASE = "tierserve"
DEFAULT_NAMESPACE = "tierserve"
# Pinned Kubernetes version for lint and built-in schemas (kubernetes-validate ships 1.25-1.37).
KUBE_VERSION = "1.33.0"
# Serve listens here in every Ray pod (KubeRay's convention); the Service maps serve.port to it.
SERVE_CONTAINER_PORT = 8000
# In a pod, Serve must listen on all interfaces or the Service cannot reach it.
SERVE_HTTP_HOST = "0.0.0.0"

# GPUs without bfloat16 (compute capability < 8.0): vLLM refuses dtype bfloat16 on them.
NO_BF16_GPUS = frozenset({"T4", "V100"})


class RenderError(ValueError):
    """Values or configs that cannot produce a valid deployment; the message says why."""


@dataclass
class Rendered:
    """The result of one render: manifests by template path, parsed objects, inputs used."""

    manifests: dict[str, str]
    objects: list[dict[str, Any]]
    values: dict[str, Any]
    config: TierserveConfig
    warnings: list[str] = field(default_factory=list)


def suspended_deployment(tier: TierConfig) -> dict[str, Any]:
    """Serve's override for a suspended tier: its deployment scales to zero, so the app stays
    RUNNING instead of waiting forever for the GPU pods that suspend removed."""
    scaling = {**tier.autoscaling.to_serve(), "min_replicas": 0, "initial_replicas": 0}
    return {"name": tier.deployment_name, "autoscaling_config": scaling}


def serve_config_doc(config: TierserveConfig, suspended: frozenset[str] = frozenset()) -> dict[str, Any]:
    """The Serve config a RayService runs: the same function that writes serve_config.yaml,
    plus the scale-to-zero override of each suspended tier (in the profile's tier order)."""
    doc = render_serve_config(config, offline=False, http_host=SERVE_HTTP_HOST,
                              http_port=SERVE_CONTAINER_PORT)
    overrides = [suspended_deployment(t) for t in config.tiers if t.name in suspended]
    if overrides:  # after the router's (its live routing settings, app/config/live.py)
        app = doc["applications"][0]
        app["deployments"] = [*app.get("deployments", []), *overrides]
    return doc


def pool_resources_param(resources: dict[str, float]) -> str:
    """Custom resources as KubeRay's rayStartParams.resources wants them: '"{\\"pool_x\\": 1}"'."""
    return json.dumps(json.dumps(resources))


def parse_resources_param(value: str) -> dict[str, float]:
    """The custom resources a rayStartParams.resources value advertises ({} if unreadable)."""
    try:
        inner = json.loads(value)
        data = json.loads(inner) if isinstance(inner, str) else inner
    except (TypeError, ValueError):
        return {}
    return {str(k): float(v) for k, v in data.items()} if isinstance(data, dict) else {}


def merge_values(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    """Helm's `-f a -f b` semantics: maps merge, lists and scalars replace, null deletes."""
    out = copy.deepcopy(base)
    for key, value in override.items():
        if value is None:
            out.pop(key, None)
        elif isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = merge_values(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def load_values_files(paths: list[Path]) -> dict[str, Any]:
    merged: dict[str, Any] = {}
    for path in paths:
        try:
            data = yaml.safe_load(Path(path).read_text()) or {}
        except (OSError, yaml.YAMLError) as exc:
            raise RenderError(f"{path}: cannot read values: {exc}") from exc
        if not isinstance(data, dict):
            raise RenderError(f"{path}: values must be a mapping")
        merged = merge_values(merged, data)
    return merged


def parse_cpu(quantity: str | int | float) -> float:
    """A Kubernetes CPU quantity ("8", "7500m", 4) in cores."""
    text = str(quantity).strip()
    try:
        return float(text[:-1]) / 1000 if text.endswith("m") else float(text)
    except ValueError:
        raise RenderError(f"not a CPU quantity: {quantity!r}") from None


def _tier_values(values: dict[str, Any], name: str) -> dict[str, Any]:
    return merge_values(values.get("tierDefaults") or {}, (values.get("tiers") or {}).get(name) or {})


def plan_tier(tier: TierConfig, tv: dict[str, Any]) -> dict[str, Any]:
    """Worker-group numbers for one tier, so its Serve replicas fit its pods exactly."""
    res = tier.resources
    if res.accelerator != "gpu":
        raise RenderError(f"tier {tier.name}: accelerator {res.accelerator!r}; the chart deploys "
                          "GPU tiers only (render a GPU profile such as 'gpu')")
    gpus = int(tv.get("gpusPerWorker") or math.ceil(res.num_gpus))
    if gpus < res.num_gpus:
        raise RenderError(f"tiers.{tier.name}.gpusPerWorker={gpus}: the tier needs "
                          f"{res.num_gpus:g} GPU(s) per replica (configs resources.num_gpus)")
    cpus = math.floor(parse_cpu(tv.get("cpu", 1)))
    if cpus < res.num_cpus:
        raise RenderError(f"tiers.{tier.name}.cpu={tv.get('cpu')!r}: the tier needs "
                          f"{res.num_cpus:g} CPU(s) per replica (configs resources.num_cpus)")
    per_worker = math.floor(gpus / res.num_gpus)
    if res.num_cpus:
        per_worker = min(per_worker, math.floor(cpus / res.num_cpus))
    if not res.node_pool:
        raise RenderError(f"tier {tier.name}: resources.node_pool is not set; each tier needs a "
                          "node pool (Ray custom resource) so its replicas land on its worker group only")
    auto = tier.autoscaling
    return {
        "name": tier.name, "groupName": f"tier-{tier.name}",
        # rayStartParams.resources in KubeRay's form: a JSON object, itself quoted.
        "poolResources": pool_resources_param({res.node_pool: 1}),
        "numGpus": res.num_gpus, "numCpus": res.num_cpus,
        "gpusPerWorker": gpus, "cpusPerWorker": cpus, "replicasPerWorker": per_worker,
        "minWorkers": math.ceil(auto.min_replicas / per_worker),
        "maxWorkers": math.ceil(auto.max_replicas / per_worker),
        "serveMinReplicas": auto.min_replicas, "serveMaxReplicas": auto.max_replicas,
        "suspendedServeDeployment": suspended_deployment(tier),
    }


def _check_tier(tier: TierConfig, tv: dict[str, Any], plan: dict[str, Any]) -> list[str]:
    """Raise on values that can never work; return warnings for ones that waste or surprise."""
    name, warnings = tier.name, []
    params = tv.get("rayStartParams") or {}
    for key, value in params.items():
        if not isinstance(value, str):
            raise RenderError(f"tiers.{name}.rayStartParams.{key}: {value!r} is a "
                              f"{type(value).__name__}; Ray start parameters must be strings "
                              f"(write {key}: \"{value}\")")
    if "num-gpus" in params and params["num-gpus"] != str(plan["gpusPerWorker"]):
        raise RenderError(f"tiers.{name}.rayStartParams.num-gpus={params['num-gpus']!r} disagrees "
                          f"with the {plan['gpusPerWorker']} GPU(s) the pod requests "
                          f"({tv.get('gpuResource')} limit); set tiers.{name}.gpusPerWorker instead")
    gpu_type = tv.get("gpuType")
    wanted = tier.resources.accelerator_type
    if gpu_type and wanted and gpu_type != wanted:
        raise RenderError(f"tiers.{name}.gpuType={gpu_type} but configs ask for "
                          f"accelerator_type {wanted}")
    if gpu_type in NO_BF16_GPUS and tier.engine_kwargs.get("dtype") == "bfloat16":
        raise RenderError(f"tiers.{name}.gpuType={gpu_type}: {gpu_type} has no bfloat16 and the "
                          f"profile sets engine_kwargs.dtype bfloat16; use a profile with dtype "
                          f"float16 for {gpu_type} nodes")
    lo, hi = tv.get("minReplicas", plan["minWorkers"]), tv.get("maxReplicas", plan["maxWorkers"])
    if lo > hi:
        raise RenderError(f"tiers.{name}: minReplicas {lo} > maxReplicas {hi}")
    if tv.get("suspend"):
        warnings.append(f"tier {name} is suspended: no GPU pods; its Serve deployment scales to "
                        f"zero and `auto` requests go to the other tiers")
        return warnings
    if hi == 0:
        raise RenderError(f"tiers.{name}.maxReplicas=0: tier {name}'s replicas could never be "
                          f"scheduled; use tiers.{name}.suspend=true for a night off")
    if hi * plan["replicasPerWorker"] < plan["serveMaxReplicas"]:
        warnings.append(f"tier {name}: Serve may scale to {plan['serveMaxReplicas']} replicas but "
                        f"worker group {plan['groupName']} holds at most "
                        f"{hi * plan['replicasPerWorker']}")
    if lo == 0 and plan["serveMinReplicas"] > 0:
        warnings.append(f"tier {name}: worker group may scale to 0 pods, but Serve keeps "
                        f"min_replicas={plan['serveMinReplicas']} (configs), so the autoscaler "
                        f"keeps a GPU pod; set autoscaling.min_replicas: 0 in the profile for "
                        f"true scale-to-zero")
    return warnings


def _check_keys(config: TierserveConfig, values: dict[str, Any]) -> list[str]:
    """Keys and limits need shared state once there is more than one pod or replica."""
    secrets = values.get("secrets") or {}
    warnings = []
    if not (secrets.get("database") or {}).get("name"):
        warnings.append("secrets.database.name is empty: each pod keeps its own SQLite keys "
                        "database; set a Secret with a PostgreSQL URL for production")
    redis_url = (secrets.get("redis") or {}).get("name") or \
        config.server.keys.counters_url.startswith("redis")
    if config.server.ingress_replicas > 1 and not redis_url:
        warnings.append(f"{config.server.ingress_replicas} ingress replicas without Redis "
                        "(secrets.redis.name): each replica enforces per-key limits alone")
    return warnings


def generated_values(config: TierserveConfig, values: dict[str, Any]) -> tuple[dict[str, Any], list[str]]:
    """The `generated` values block (from configs/) and any warnings about the user's values."""
    known = {t.name for t in config.tiers}
    for name in values.get("tiers") or {}:
        if name not in known:
            raise RenderError(f"tiers.{name}: no tier {name!r} in profile {config.profile!r}; "
                              f"tiers are {sorted(known)}")
    plans, warnings = [], []
    for tier in config.tiers:
        tv = _tier_values(values, tier.name)
        plan = plan_tier(tier, tv)
        warnings += _check_tier(tier, tv, plan)
        plans.append(plan)
    serve_yaml = yaml.safe_dump(serve_config_doc(config), sort_keys=False)
    ray_serve_env = [{"name": k, "value": v} for k, v in config.server.ray_serve.env().items()]
    warnings += _check_keys(config, values)
    keys = config.server.keys
    keys_env = {"database": keys.db_url_env, "adminKeys": keys.admin_keys_env,
                "redis": keys.counters_url_env}
    system_pool = config.server.node_pool
    return {"profile": config.profile, "serveConfigV2": serve_yaml,
            "systemPoolResources": pool_resources_param({system_pool: 1}) if system_pool else "",
            "apiKeysEnv": config.server.api_keys_env, "rayServeEnv": ray_serve_env,
            "keysEnv": keys_env, "tiers": plans}, warnings


def parse_manifests(manifests: dict[str, str]) -> list[dict[str, Any]]:
    objects = []
    for path in sorted(manifests):
        if not path.endswith((".yaml", ".yml")):
            continue  # NOTES.txt
        try:
            objects += [doc for doc in yaml.safe_load_all(manifests[path]) if doc]
        except yaml.YAMLError as exc:
            raise RenderError(f"{path}: rendered YAML does not parse: {exc}") from exc
    return objects


def render(values_files: list[Path] | None = None, *, profile: str | None = None,
           extra_values: dict[str, Any] | None = None, release: str = DEFAULT_RELEASE,
           namespace: str = DEFAULT_NAMESPACE, chart_dir: Path = CHART_DIR) -> Rendered:
    """Render the chart with the given values files (merged left to right) for one profile:
    `profile`, else the values' own `profile` (e.g. values/t4.yaml names gpu-t4), else gpu."""
    import helm_python as helm  # native library: load only when rendering

    user = load_values_files(list(values_files or []))
    if extra_values:
        user = merge_values(user, extra_values)
    if "generated" in user:
        raise RenderError("values must not set `generated`: it is computed from configs/")
    config = load_config(profile or user.get("profile") or DEFAULT_PROFILE)
    with helm.Chart.load(chart_dir) as chart:
        merged = chart.merge_values(user)
        try:
            chart.validate_schema(merged)  # typos and wrong types, named by values path
        except helm.HelmValuesError as exc:
            raise RenderError(f"values do not match {chart_dir}/values.schema.json:\n{exc}") from None
        generated, warnings = generated_values(config, merged)
        user["generated"] = generated
        try:
            manifests = chart.render(user, name=release, namespace=namespace, is_install=True)
        except helm.HelmError as exc:
            raise RenderError(f"helm render failed: {exc}") from None
        used = chart.merge_values(user)
    return Rendered(manifests=manifests, objects=parse_manifests(manifests), values=used,
                    config=config, warnings=warnings)


def write_out(rendered: Rendered, out_dir: Path) -> list[Path]:
    """Write manifests (like `helm template --output-dir`) and the values a real
    `helm install -f` needs, generated block included."""
    written = []
    for rel, text in sorted(rendered.manifests.items()):
        if not text.strip():
            continue
        path = out_dir / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        written.append(path)
    values_path = out_dir / "values.generated.yaml"
    values_path.parent.mkdir(parents=True, exist_ok=True)
    values_path.write_text(
        f"# Generated by `tierserve k8s render` from configs/ (profile {rendered.config.profile!r}).\n"
        "# Use with: helm upgrade --install tierserve kuberay/chart -f values.generated.yaml\n"
        + yaml.safe_dump({"generated": rendered.values["generated"]}, sort_keys=False))
    written.append(values_path)
    return written
