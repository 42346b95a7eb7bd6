"""The KubeRay chart renders offline, validates, and agrees with configs/ (tooling/k8s/render.py)."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
import yaml

from app.config import load_config
from app.serve_config import render_serve_config
from tooling.k8s import consistency, cost
from tooling.k8s.cli import main as k8s_main
from tooling.k8s.render import VALUES_DIR, Rendered, RenderError, parse_resources_param, render, write_out
from tooling.k8s.validate import validate_rendered

EXAMPLES = sorted(VALUES_DIR.glob("*.yaml"))


@pytest.fixture(scope="module")
def default() -> Rendered:
    return render([])


def _one(objects: list[dict[str, Any]], kind: str) -> dict[str, Any]:
    found = [o for o in objects if o["kind"] == kind]
    assert len(found) == 1, f"expected one {kind}, got {len(found)}"
    return found[0]


def _groups(rendered: Rendered) -> dict[str, dict[str, Any]]:
    cluster = _one(rendered.objects, "RayService")["spec"]["rayClusterConfig"]
    return {"head": cluster["headGroupSpec"], **{g["groupName"]: g for g in cluster["workerGroupSpecs"]}}


def test_examples_exist() -> None:
    names = {p.stem for p in VALUES_DIR.glob("*.yaml")}
    assert {"t4", "l4", "a10g", "h100", "scale-to-zero"} <= names


@pytest.mark.parametrize("values", [None, *EXAMPLES], ids=lambda p: p.stem if p else "defaults")
def test_each_values_file_renders_and_validates(values: Path | None) -> None:
    rendered = render([values] if values else [])
    report = validate_rendered(rendered)
    assert report.ok, "\n".join(report.errors)
    kinds = {o["kind"] for o in rendered.objects}
    assert {"RayService", "NetworkPolicy", "PodDisruptionBudget"} <= kinds


def test_serve_config_v2_is_generated_from_configs(default: Rendered) -> None:
    text = _one(default.objects, "RayService")["spec"]["serveConfigV2"]
    expected = render_serve_config(load_config("gpu"), offline=False, http_host="0.0.0.0")
    assert yaml.safe_load(text) == expected
    # The chart itself holds no copy of it.
    chart_text = "".join(p.read_text() for p in (VALUES_DIR.parent / "chart").rglob("*.yaml"))
    assert "import_path" not in chart_text


def test_head_runs_no_model_and_declares_ports(default: Rendered) -> None:
    head = _groups(default)["head"]
    assert head["rayStartParams"]["num-gpus"] == "0"
    ports = {p["name"]: p["containerPort"] for p in head["template"]["spec"]["containers"][0]["ports"]}
    assert ports == {"gcs": 6379, "dashboard": 8265, "client": 10001, "serve": 8000, "metrics": 8080}
    env = {e["name"]: e for e in head["template"]["spec"]["containers"][0]["env"]}
    assert env["RAY_enable_autoscaler_v2"]["value"] == "1"


def test_tier_groups_follow_the_profile(default: Rendered) -> None:
    groups = _groups(default)
    for tier in load_config("gpu").tiers:
        group = groups[f"tier-{tier.name}"]
        container = group["template"]["spec"]["containers"][0]
        assert group["rayStartParams"]["num-gpus"] == str(int(tier.resources.num_gpus))
        assert container["resources"]["limits"]["nvidia.com/gpu"] == int(tier.resources.num_gpus)
        assert float(group["rayStartParams"]["num-cpus"]) >= tier.resources.num_cpus
        assert (group["minReplicas"], group["maxReplicas"]) == (
            tier.autoscaling.min_replicas, tier.autoscaling.max_replicas)
        assert {"name": "metrics", "containerPort": 8080, "protocol": "TCP"} in container["ports"]
        assert any(t.get("key") == "nvidia.com/gpu" for t in group["template"]["spec"]["tolerations"])
    for name, group in groups.items():
        assert all(isinstance(v, str) for v in group["rayStartParams"].values()), name


def test_autoscaler_v2(default: Rendered) -> None:
    cluster = _one(default.objects, "RayService")["spec"]["rayClusterConfig"]
    assert cluster["enableInTreeAutoscaling"] is True
    assert cluster["autoscalerOptions"]["version"] == "v2"


def test_every_ray_container_gets_the_serve_data_path_env(default: Rendered) -> None:
    want = default.config.server.ray_serve.env()
    assert want["RAY_SERVE_ENABLE_HA_PROXY"] in ("0", "1")
    for group in _groups(default).values():
        env = {e["name"]: e.get("value") for e in group["template"]["spec"]["containers"][0]["env"]}
        assert {k: env.get(k) for k in want} == want


def test_secrets_are_referenced_never_inlined(default: Rendered) -> None:
    assert not [o for o in default.objects if o["kind"] == "Secret"]
    for group in _groups(default).values():
        env = {e["name"]: e for e in group["template"]["spec"]["containers"][0]["env"]}
        ref = env["TIERSERVE_API_KEYS"]["valueFrom"]["secretKeyRef"]
        assert ref == {"name": "tierserve-api-keys", "key": "api-keys"}
        assert "value" not in env["TIERSERVE_API_KEYS"]
    rendered = render([], extra_values={"secrets": {"s3": {"name": "tierserve-s3"}}})
    env = {e["name"]: e for e in _groups(rendered)["tier-fast"]["template"]["spec"]["containers"][0]["env"]}
    assert env["AWS_ACCESS_KEY_ID"]["valueFrom"]["secretKeyRef"]["name"] == "tierserve-s3"
    assert env["AWS_SECRET_ACCESS_KEY"]["valueFrom"]["secretKeyRef"]["name"] == "tierserve-s3"


def test_ingress_with_tls_points_at_the_serve_service() -> None:
    rendered = render([], extra_values={"ingress": {"enabled": True, "host": "llm.example.com"}})
    assert validate_rendered(rendered, lint=False).ok
    ingress = _one(rendered.objects, "Ingress")
    assert ingress["metadata"]["annotations"]["cert-manager.io/cluster-issuer"] == "letsencrypt-prod"
    assert ingress["spec"]["tls"][0]["hosts"] == ["llm.example.com"]
    backend = ingress["spec"]["rules"][0]["http"]["paths"][0]["backend"]["service"]
    serve_svc = _one(rendered.objects, "RayService")["spec"]["serveService"]
    assert backend["name"] == serve_svc["metadata"]["name"]
    assert backend["port"]["name"] in {p["name"] for p in serve_svc["spec"]["ports"]}


def test_network_policy_limits_serve_and_metrics(default: Rendered) -> None:
    rules = _one(default.objects, "NetworkPolicy")["spec"]["ingress"]
    by_port = {p["port"]: r["from"] for r in rules for p in r.get("ports") or []}
    ingress_ns = {"kubernetes.io/metadata.name": "ingress-nginx"}
    assert by_port[8000][0]["namespaceSelector"]["matchLabels"] == ingress_ns
    assert by_port[8080][0]["podSelector"]["matchLabels"] == {"app.kubernetes.io/name": "prometheus"}


def test_podmonitor_ports_exist_and_a_wrong_one_is_caught(default: Rendered) -> None:
    monitors = [o for o in default.objects if o["kind"] == "PodMonitor"]
    if not monitors:  # monitoring templates absent: check with a minimal PodMonitor of our own
        monitors = [{"kind": "PodMonitor", "metadata": {"name": "m"}, "spec": {
            "selector": {"matchLabels": {"app.kubernetes.io/instance": "tierserve"}},
            "podMetricsEndpoints": [{"port": "metrics"}]}}]
    objects = [o for o in default.objects if o["kind"] != "PodMonitor"] + monitors
    rs = _one(objects, "RayService")
    assert consistency.check_ports(objects, rs) == []
    broken = copy.deepcopy(monitors[0])
    broken["spec"]["podMetricsEndpoints"][0]["port"] = "metricz"
    errors = consistency.check_ports([broken], rs)
    assert errors and "metricz" in errors[0]


def test_consistency_catches_manifest_level_mismatches(default: Rendered) -> None:
    config = default.config
    objects = copy.deepcopy(default.objects)
    rs = _one(objects, "RayService")
    groups = rs["spec"]["rayClusterConfig"]["workerGroupSpecs"]
    fast = next(g for g in groups if g["groupName"] == "tier-fast")
    fast["template"]["spec"]["containers"][0]["resources"]["limits"]["nvidia.com/gpu"] = 2
    rs["spec"]["serveConfigV2"] = rs["spec"]["serveConfigV2"].replace("profile: gpu", "profile: local-cpu")
    rs["spec"]["rayClusterConfig"]["headGroupSpec"]["rayStartParams"]["num-gpus"] = "1"
    fast_env = fast["template"]["spec"]["containers"][0]["env"]
    fast["template"]["spec"]["containers"][0]["env"] = [
        e for e in fast_env if e["name"] != "RAY_SERVE_ENABLE_HA_PROXY"]
    errors = "\n".join(consistency.check(objects, config))
    assert "tier-fast: container ray-worker env {'RAY_SERVE_ENABLE_HA_PROXY': None} differs" in errors
    assert ("tier-fast: rayStartParams.num-gpus='1' but container ray-worker has nvidia.com/gpu limit 2"
            in errors)
    assert "serveConfigV2 differs from configs/" in errors
    assert "head: rayStartParams.num-gpus must be \"0\"" in errors


def _values_file(tmp_path: Path, data: dict[str, Any]) -> Path:
    path = tmp_path / "values.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


@pytest.mark.parametrize(("values", "message"), [
    ({"tiers": {"fast": {"cpuu": "8"}}}, "additional properties 'cpuu' not allowed"),
    ({"head": {"rayStartParams": {"num-cpus": 0}}},
     "/head/rayStartParams/num-cpus': got number, want string"),
    ({"tiers": {"fast": {"rayStartParams": {"num-gpus": "2"}}}},
     "tiers.fast.rayStartParams.num-gpus='2' disagrees with the 1 GPU(s) the pod requests"),
    ({"tiers": {"fast": {"cpu": "2"}}}, "tiers.fast.cpu='2': the tier needs 4 CPU(s) per replica"),
    ({"tiers": {"fats": {"cpu": "8"}}}, "tiers.fats: no tier 'fats' in profile 'gpu'"),
    ({"tiers": {"fast": {"maxReplicas": 0}}}, "tiers.fast: minReplicas 1 > maxReplicas 0"),
    ({"tiers": {"fast": {"minReplicas": 0, "maxReplicas": 0}}}, "use tiers.fast.suspend=true"),
    ({"generated": {"profile": "x"}}, "must not set `generated`"),
])
def test_broken_values_fail_clearly(tmp_path: Path, values: dict[str, Any], message: str) -> None:
    with pytest.raises(RenderError) as info:
        render([_values_file(tmp_path, values)])
    assert message in str(info.value)


def test_t4_is_refused_for_a_bfloat16_profile() -> None:
    with pytest.raises(RenderError, match="T4 has no bfloat16"):
        render([VALUES_DIR / "t4.yaml"], profile="gpu",
               extra_values={"tiers": {"fast": {"cpu": "8"}, "reasoning": {"cpu": "12"}}})


def test_t4_values_select_the_float16_profile() -> None:
    rendered = render([VALUES_DIR / "t4.yaml"])
    assert rendered.config.profile == "gpu-t4"
    assert {t.engine_kwargs["dtype"] for t in rendered.config.tiers} == {"float16"}
    assert "profile: gpu-t4" in _one(rendered.objects, "RayService")["spec"]["serveConfigV2"]


def test_each_tier_group_advertises_its_pool_and_only_it(default: Rendered) -> None:
    groups = _groups(default)
    for tier in default.config.tiers:
        pool = tier.resources.node_pool
        assert pool, f"tier {tier.name} names no node pool"
        advertised = {n: parse_resources_param((g.get("rayStartParams") or {}).get("resources", ""))
                      for n, g in groups.items()}
        assert advertised[f"tier-{tier.name}"] == {pool: 1.0}
        assert [n for n, res in advertised.items() if pool in res] == [f"tier-{tier.name}"]
    assert consistency.check_pools(_one(default.objects, "RayService"), default.config) == []


def test_consistency_catches_a_pool_on_the_wrong_group(default: Rendered) -> None:
    objects = copy.deepcopy(default.objects)
    rs = _one(objects, "RayService")
    workers = {g["groupName"]: g for g in rs["spec"]["rayClusterConfig"]["workerGroupSpecs"]}
    workers["tier-fast"]["rayStartParams"].pop("resources")
    rs["spec"]["rayClusterConfig"]["headGroupSpec"]["rayStartParams"]["resources"] = \
        workers["system"]["rayStartParams"]["resources"]
    reasoning_resources = workers["tier-reasoning"]["rayStartParams"]["resources"]
    workers["system"]["rayStartParams"]["resources"] = reasoning_resources
    errors = "\n".join(consistency.check_pools(rs, default.config))
    assert "server.node_pool pool_system (ingress and router) is advertised by ['head']" in errors
    assert "worker group tier-fast does not advertise pool_fast" in errors
    assert "pool_reasoning is also advertised by ['system']" in errors


def test_scale_to_zero_warns_while_serve_keeps_a_replica() -> None:
    rendered = render([VALUES_DIR / "scale-to-zero.yaml"])
    assert _groups(rendered)["tier-fast"]["minReplicas"] == 0
    assert any("Serve keeps min_replicas=1" in w for w in rendered.warnings)


def test_suspend_keeps_config_and_drops_gpu_pods(default: Rendered) -> None:
    suspended = render([], extra_values={"tiers": {"fast": {"suspend": True}}})
    assert validate_rendered(suspended, lint=False).ok
    fast = _groups(suspended)["tier-fast"]
    assert (fast["minReplicas"], fast["maxReplicas"], fast["replicas"]) == (0, 0, 0)
    assert _groups(suspended)["tier-reasoning"] == _groups(default)["tier-reasoning"]
    before, after = (yaml.safe_load(_one(r.objects, "RayService")["spec"]["serveConfigV2"])
                     for r in (default, suspended))
    # Serve scales the suspended tier's deployment to zero; nothing else changes.
    router, override = after["applications"][0].pop("deployments")
    assert before["applications"][0].pop("deployments") == [router]  # the live routing settings
    assert before == after
    fast_scaling = default.config.tier("fast").autoscaling
    assert override == {"name": "tier-fast", "autoscaling_config": {
        **fast_scaling.to_serve(), "min_replicas": 0, "initial_replicas": 0}}
    assert not consistency.check(suspended.objects, suspended.config)


def test_consistency_catches_a_suspended_tier_without_its_serve_override() -> None:
    suspended = render([], extra_values={"tiers": {"fast": {"suspend": True}}})
    objects = copy.deepcopy(suspended.objects)
    rs = _one(objects, "RayService")
    rs["spec"]["serveConfigV2"] = yaml.safe_dump(
        render_serve_config(suspended.config, offline=False, http_host="0.0.0.0", http_port=8000))
    assert "serveConfigV2 differs from configs/" in "\n".join(consistency.check(objects, suspended.config))


def test_suspend_commands() -> None:
    [cmd] = cost.helm_commands("tierserve", "ns", ["fast", "reasoning"], suspend=True, chart="kuberay/chart")
    assert cmd == ["helm", "upgrade", "tierserve", "kuberay/chart", "--namespace", "ns", "--reuse-values",
                   "--set", "tiers.fast.suspend=true", "--set", "tiers.reasoning.suspend=true"]
    [patch] = cost.kubectl_commands(render([]), "ns", ["reasoning"], suspend=True)
    assert patch[:7] == ["kubectl", "--namespace", "ns", "patch", "rayservice", "tierserve", "--type=json"]
    ops = {op["path"].rsplit("/", 1)[1]: op["value"] for op in yaml.safe_load(patch[-1])}
    serve = yaml.safe_load(ops.pop("serveConfigV2"))
    assert ops == {"minReplicas": 0, "maxReplicas": 0, "replicas": 0}
    assert [d["name"] for d in serve["applications"][0]["deployments"]] == ["router", "tier-reasoning"]
    [resume] = cost.kubectl_commands(render([]), "ns", ["reasoning"], suspend=False)
    ops = {op["path"].rsplit("/", 1)[1]: op["value"] for op in yaml.safe_load(resume[-1])}
    resumed = yaml.safe_load(ops["serveConfigV2"])["applications"][0]["deployments"]
    assert [d["name"] for d in resumed] == ["router"]


def test_generated_values_reproduce_the_render_through_plain_helm(default: Rendered, tmp_path: Path) -> None:
    """What `helm install -f values.generated.yaml` would apply equals our render."""
    import helm_python as helm

    write_out(default, tmp_path)
    generated = yaml.safe_load((tmp_path / "values.generated.yaml").read_text())
    with helm.Chart.load(VALUES_DIR.parent / "chart") as chart:
        manifests = chart.render(generated, name="tierserve", namespace="tierserve")
    key = "tierserve/templates/rayservice.yaml"
    assert manifests[key] == default.manifests[key]
    assert (tmp_path / key).read_text() == default.manifests[key]


def test_cli_render_and_suspend(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert k8s_main(["k8s", "render", "--out", str(tmp_path)]) == 0
    assert (tmp_path / "tierserve/templates/rayservice.yaml").is_file()
    assert k8s_main(["k8s", "suspend", "--dry-run", "--tiers", "fast"]) == 0
    assert "--reuse-values --set tiers.fast.suspend=true" in capsys.readouterr().out
    assert k8s_main(["k8s", "render", "--set", "tiers.fast.cpuu=1"]) == 1
    assert "cpuu" in capsys.readouterr().err


def test_keys_database_admin_and_redis_come_from_secrets(default: Rendered) -> None:
    from tooling.k8s.consistency import check

    assert any("secrets.database.name is empty" in w for w in default.warnings)
    rendered = render([], extra_values={"secrets": {
        "database": {"name": "tierserve-db"}, "adminKeys": {"name": "tierserve-admin"},
        "redis": {"name": "tierserve-redis"}}})
    assert not any("secrets.database" in w for w in rendered.warnings)
    for group in _groups(rendered).values():
        env = {e["name"]: e for e in group["template"]["spec"]["containers"][0]["env"]}
        assert env["TIERSERVE_DB_URL"]["valueFrom"]["secretKeyRef"] == {"name": "tierserve-db", "key": "url"}
        assert env["TIERSERVE_ADMIN_KEYS"]["valueFrom"]["secretKeyRef"]["name"] == "tierserve-admin"
        assert env["TIERSERVE_REDIS_URL"]["valueFrom"]["secretKeyRef"]["name"] == "tierserve-redis"
    assert validate_rendered(rendered, lint=False).ok
    # An inlined URL, or pods that disagree on the database, fail the consistency check.
    rs = _one(rendered.objects, "RayService")
    head = rs["spec"]["rayClusterConfig"]["headGroupSpec"]["template"]["spec"]["containers"][0]
    head["env"] = [e for e in head["env"] if e["name"] != "TIERSERVE_DB_URL"] + [
        {"name": "TIERSERVE_DB_URL", "value": "postgresql://u:p@db/x"}]
    errors = check(rendered.objects, rendered.config)
    assert any("TIERSERVE_DB_URL set as a plain value" in e for e in errors)
    assert any("TIERSERVE_DB_URL differs between Ray containers" in e for e in errors)
