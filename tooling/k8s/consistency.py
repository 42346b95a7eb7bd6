"""Checks across rendered objects that no schema can express.

serveConfigV2 equals what configs/ produce; each tier's Serve replica fits the worker group
meant for it; GPU counts agree between Ray and Kubernetes; Ray start parameters are strings;
each tier's node pool is advertised by its group alone;
the ports that Services, NetworkPolicies and PodMonitors name exist on the pods; each tier
pod keeps its model caches on a volume, and an s3:// tier gets its credentials from a Secret.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import yaml

from app.config.schema import TierserveConfig
from tooling.k8s.render import parse_cpu, parse_resources_param, serve_config_doc

HEAD_PORTS = {"gcs": 6379, "dashboard": 8265, "client": 10001, "serve": 8000, "metrics": 8080}
GPU_RESOURCE = "nvidia.com/gpu"
# Labels KubeRay adds to every Ray pod; a PodMonitor may select on them.
KUBERAY_NODE_TYPE = "ray.io/node-type"


def _pod_groups(rayservice: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any], dict[str, Any]]]:
    """(group name, group spec, pod template) for the head and each worker group."""
    cluster = rayservice["spec"]["rayClusterConfig"]
    yield "head", cluster["headGroupSpec"], cluster["headGroupSpec"]["template"]
    for group in cluster.get("workerGroupSpecs") or []:
        yield group["groupName"], group, group["template"]


def _pod_labels(name: str, template: dict[str, Any]) -> dict[str, str]:
    labels = dict((template.get("metadata") or {}).get("labels") or {})
    labels[KUBERAY_NODE_TYPE] = "head" if name == "head" else "worker"
    labels["ray.io/group"] = "headgroup" if name == "head" else name
    labels["ray.io/is-ray-node"] = "yes"
    return labels


def _ports(template: dict[str, Any]) -> dict[str, int]:
    return {p["name"]: p["containerPort"] for c in template["spec"]["containers"]
            for p in c.get("ports") or [] if "name" in p}


def _matches(selector: dict[str, Any], labels: dict[str, str]) -> bool:
    if not all(labels.get(k) == v for k, v in (selector.get("matchLabels") or {}).items()):
        return False
    for expr in selector.get("matchExpressions") or []:
        has, value = expr["key"] in labels, labels.get(expr["key"])
        op, values = expr["operator"], expr.get("values") or []
        if (op == "In" and value not in values) or (op == "NotIn" and value in values) \
                or (op == "Exists" and not has) or (op == "DoesNotExist" and has):
            return False
    return True


def suspended_tiers(rs: dict[str, Any], config: TierserveConfig) -> frozenset[str]:
    """Tiers whose worker group carries the chart's suspend annotation."""
    def annotations(tpl: dict) -> dict:
        return (tpl.get("metadata") or {}).get("annotations") or {}

    marked = {name for name, _, tpl in _pod_groups(rs)
              if annotations(tpl).get("tierserve.io/suspended") == "true"}
    return frozenset(t.name for t in config.tiers if f"tier-{t.name}" in marked)


def check_serve_config(rs: dict[str, Any], config: TierserveConfig) -> list[str]:
    try:
        doc = yaml.safe_load(rs["spec"]["serveConfigV2"])
    except yaml.YAMLError as exc:
        return [f"serveConfigV2 does not parse: {exc}"]
    want = serve_config_doc(config, suspended_tiers(rs, config))
    if doc != want:
        return [f"serveConfigV2 differs from configs/ (profile {config.profile}):\n"
                f"  rendered: {doc}\n  expected: {want}"]
    return []


def check_groups(rs: dict[str, Any], config: TierserveConfig) -> list[str]:
    errors: list[str] = []
    groups = {name: (spec, tpl) for name, spec, tpl in _pod_groups(rs)}
    for name, (spec, tpl) in groups.items():
        params = spec.get("rayStartParams") or {}
        errors += [f"{name}: rayStartParams.{k}={v!r} is not a string"
                   for k, v in params.items() if not isinstance(v, str)]
        ports = _ports(tpl)
        if ports.get("metrics") != 8080:
            errors.append(f"{name}: Ray container declares no port `metrics` 8080")
        for container in tpl["spec"]["containers"]:
            res = container.get("resources") or {}
            limit = (res.get("limits") or {}).get(GPU_RESOURCE, 0)
            request = (res.get("requests") or {}).get(GPU_RESOURCE, limit)
            ray_gpus = str(params.get("num-gpus", "0"))
            if str(limit) != ray_gpus or str(request) != str(limit):
                errors.append(f"{name}: rayStartParams.num-gpus={ray_gpus!r} but container "
                              f"{container['name']} has {GPU_RESOURCE} limit {limit!r}, "
                              f"request {request!r}")
    head_spec, head_tpl = groups["head"]
    if (head_spec.get("rayStartParams") or {}).get("num-gpus") != "0":
        errors.append("head: rayStartParams.num-gpus must be \"0\" (the head runs no model)")
    head_ports = _ports(head_tpl)
    errors += [f"head: port {n} {p} missing (has {head_ports})" for n, p in HEAD_PORTS.items()
               if head_ports.get(n) != p]
    for tier in config.tiers:
        errors += _check_tier_fits(tier.name, tier.resources.num_gpus, tier.resources.num_cpus,
                                   groups.get(f"tier-{tier.name}"))
    return errors


def _check_tier_fits(name: str, gpus: float, cpus: float,
                     group: tuple[dict[str, Any], dict[str, Any]] | None) -> list[str]:
    """A replica of the tier (its Ray bundle) must fit one pod of its worker group."""
    if group is None:
        return [f"tier {name}: no worker group tier-{name}"]
    spec, tpl = group
    params = spec.get("rayStartParams") or {}
    errors = []
    try:
        have_gpus, have_cpus = float(params.get("num-gpus", 0)), float(params.get("num-cpus", 0))
    except ValueError:
        return [f"tier {name}: num-gpus/num-cpus are not numbers: {params}"]
    if have_gpus < gpus or have_cpus < cpus:
        errors.append(f"tier {name}: a replica needs {gpus:g} GPU/{cpus:g} CPU but a "
                      f"tier-{name} pod offers {have_gpus:g} GPU/{have_cpus:g} CPU")
    cpu_limit = ((tpl["spec"]["containers"][0].get("resources") or {}).get("limits") or {}).get("cpu")
    if cpu_limit is None or parse_cpu(cpu_limit) < have_cpus:
        errors.append(f"tier {name}: num-cpus {have_cpus:g} exceeds the container cpu limit {cpu_limit}")
    suspended = (tpl.get("metadata") or {}).get("annotations", {}).get("tierserve.io/suspended")
    if spec.get("maxReplicas", 1) < 1 and suspended != "true":
        errors.append(f"tier {name}: maxReplicas 0 and not suspended: never schedulable")
    return errors


def check_pools(rs: dict[str, Any], config: TierserveConfig) -> list[str]:
    """Each tier's node pool (the custom resource its replicas ask for) is advertised by its
    own worker group and by no other pod: its replicas are schedulable there and only there."""
    advertised = {name: parse_resources_param((spec.get("rayStartParams") or {}).get("resources", ""))
                  for name, spec, _ in _pod_groups(rs)}
    errors = []
    system_pool = config.server.node_pool
    if system_pool:
        holders = sorted(n for n, res in advertised.items() if res.get(system_pool, 0) > 0)
        if holders != ["system"]:
            errors.append(f"server.node_pool {system_pool} (ingress and router) is advertised by "
                          f"{holders or 'no group'}; it belongs to the system group alone")
    for tier in config.tiers:
        pool, group = tier.resources.node_pool, f"tier-{tier.name}"
        if not pool:
            errors.append(f"tier {tier.name}: no resources.node_pool; its replicas could land on "
                          f"any GPU group")
            continue
        if group in advertised and advertised[group].get(pool, 0) <= 0:
            errors.append(f"tier {tier.name}: worker group {group} does not advertise {pool} in "
                          f"rayStartParams.resources ({advertised[group] or 'none'}); its replicas "
                          f"could never be scheduled")
        others = sorted(n for n, res in advertised.items() if n != group and res.get(pool, 0) > 0)
        if others:
            errors.append(f"tier {tier.name}: {pool} is also advertised by {others}; its replicas "
                          f"could land outside {group}")
    return errors


def check_ports(objects: list[dict[str, Any]], rs: dict[str, Any]) -> list[str]:
    """Every port a PodMonitor, NetworkPolicy or the Serve Service names exists on its pods."""
    pods = [(n, _pod_labels(n, tpl), _ports(tpl)) for n, _, tpl in _pod_groups(rs)]
    errors = []
    for obj in objects:
        kind, name = obj["kind"], obj["metadata"]["name"]
        if kind == "PodMonitor":
            chosen = [p for p in pods if _matches(obj["spec"].get("selector") or {}, p[1])]
            if not chosen:
                errors.append(f"PodMonitor/{name}: selector matches no Ray pod")
            for ep in obj["spec"].get("podMetricsEndpoints") or []:
                for group, _, ports in chosen:
                    if "port" in ep and ep["port"] not in ports:
                        errors.append(f"PodMonitor/{name}: port {ep['port']!r} not on {group} pods")
                    if "portNumber" in ep and ep["portNumber"] not in ports.values():
                        errors.append(f"PodMonitor/{name}: port {ep['portNumber']} not on {group} pods")
        elif kind == "NetworkPolicy":
            chosen = [p for p in pods if _matches(obj["spec"].get("podSelector") or {}, p[1])]
            for rule in obj["spec"].get("ingress") or []:
                for port in rule.get("ports") or []:
                    if not any(port["port"] in ports.values() or port["port"] in ports
                               for _, _, ports in chosen):
                        errors.append(f"NetworkPolicy/{name}: port {port['port']} on no selected pod")
    svc = rs["spec"].get("serveService")
    if svc:
        for port in svc["spec"].get("ports") or []:
            target = port.get("targetPort", port["port"])
            if not all(target in ports.values() or target in ports for _, _, ports in pods):
                errors.append(f"serveService: targetPort {target} missing on some Ray pods")
    return errors


def check_serve_env(rs: dict[str, Any], config: TierserveConfig) -> list[str]:
    """Serve reads its data-path switches per process: every Ray container needs the same ones."""
    want = config.server.ray_serve.env()
    errors = []
    for name, _, template in _pod_groups(rs):
        for container in template["spec"]["containers"]:
            env = {e["name"]: e.get("value") for e in container.get("env") or []}
            wrong = {k: env.get(k) for k, v in want.items() if env.get(k) != v}
            if wrong:
                errors.append(f"{name}: container {container['name']} env {wrong} differs from "
                              f"configs/ server.ray_serve {want}")
    return errors


MODEL_CACHE_ENV = ("TIERSERVE_MODEL_CACHE", "HF_HUB_CACHE")
# Never inlined: these come from a Secret (secretKeyRef or envFrom) or not at all.
SECRET_ENV = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "HF_TOKEN",
              "TIERSERVE_API_KEYS")


def check_keys_env(rs: dict[str, Any], config: TierserveConfig) -> list[str]:
    """The keys database URL, admin keys and Redis URL (configs/ server.keys names them) come
    from a Secret, and every Ray container sees the same ones: an ingress replica may land on
    any pod, and replicas must share one database and one set of counters."""
    keys = config.server.keys
    names = (keys.db_url_env, keys.admin_keys_env, keys.counters_url_env)
    errors: list[str] = []
    seen: dict[str, set[str]] = {n: set() for n in names}
    for group, _, template in _pod_groups(rs):
        for container in template["spec"]["containers"]:
            env = {e["name"]: e for e in container.get("env") or []}
            for n in names:
                entry = env.get(n)
                if entry is not None and "value" in entry:
                    errors.append(f"{group}: {n} set as a plain value; take it from a Secret "
                                  f"(values secrets.*)")
                ref = ((entry or {}).get("valueFrom") or {}).get("secretKeyRef")
                seen[n].add(f"{ref['name']}/{ref['key']}" if ref else "-")
    for n, refs in seen.items():
        if len(refs) > 1:
            errors.append(f"{n} differs between Ray containers ({sorted(refs)}); every pod must "
                          f"share one keys database and one set of counters")
    return errors


def _under(path: str, mount: str) -> bool:
    return path == mount or path.startswith(mount.rstrip("/") + "/")


def check_model_cache(rs: dict[str, Any], config: TierserveConfig) -> list[str]:
    """Each tier pod's model caches sit on a volume of their own (not the container's root
    disk, not /dev/shm), and an s3:// tier's credentials come from a Secret."""
    groups = {name: tpl for name, _, tpl in _pod_groups(rs)}
    errors: list[str] = []
    for tier in config.tiers:
        tpl = groups.get(f"tier-{tier.name}")
        if tpl is None:
            continue  # check_groups reports it
        volumes = {v["name"]: v for v in tpl["spec"].get("volumes") or []}
        container = tpl["spec"]["containers"][0]
        env = {e["name"]: e for e in container.get("env") or []}
        mounts = container.get("volumeMounts") or []
        for var in MODEL_CACHE_ENV:
            path = (env.get(var) or {}).get("value")
            if not path:
                errors.append(f"tier-{tier.name}: env {var} is not set; the model cache would "
                              f"land on the container's own disk")
                continue
            mount = next((m for m in mounts if _under(path, m["mountPath"])), None)
            volume = volumes.get(mount["name"]) if mount else None
            if volume is None:
                errors.append(f"tier-{tier.name}: {var}={path} is on no mounted volume")
            elif (volume.get("emptyDir") or {}).get("medium") == "Memory":
                errors.append(f"tier-{tier.name}: {var}={path} is on memory volume "
                              f"{mount['name']}; models belong on disk")
            elif not any(k in volume for k in ("emptyDir", "ephemeral", "persistentVolumeClaim")):
                errors.append(f"tier-{tier.name}: {var}={path} is on volume {mount['name']} of an "
                              f"unexpected kind {sorted(volume)}")
        inlined = [n for n in SECRET_ENV if "value" in (env.get(n) or {})]
        if inlined:
            errors.append(f"tier-{tier.name}: {inlined} set as plain values; take them from a "
                          f"Secret (values secrets.*)")
        if tier.model_source.startswith("s3://"):
            from_secret = all("secretKeyRef" in ((env.get(n) or {}).get("valueFrom") or {})
                              for n in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"))
            if not from_secret and not container.get("envFrom"):
                errors.append(f"tier-{tier.name}: model_source {tier.model_source} but no "
                              f"AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY from a Secret; set "
                              f"secrets.s3.name to the Secret that holds them")
    return errors


def check(objects: list[dict[str, Any]], config: TierserveConfig) -> list[str]:
    services = [o for o in objects if o.get("kind") == "RayService"]
    if len(services) != 1:
        return [f"expected exactly one RayService, found {len(services)}"]
    rs = services[0]
    return (check_serve_config(rs, config) + check_serve_env(rs, config) + check_groups(rs, config)
            + check_pools(rs, config) + check_ports(objects, rs) + check_model_cache(rs, config)
            + check_keys_env(rs, config))
