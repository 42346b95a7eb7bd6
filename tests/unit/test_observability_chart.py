"""The chart's monitoring objects: rendered with Helm, validated against prometheus-operator's CRDs."""

from __future__ import annotations

import copy
import json
import shutil
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml
from helm_python.chart import Chart

from tooling.observability.paths import DASHBOARDS_DIR, PROM_OPERATOR_CRDS, REPO_ROOT, RULES_FILE

CHART = REPO_ROOT / "kuberay" / "chart"
TEMPLATES = ["_helpers.tpl", "monitoring-podmonitor.yaml", "monitoring-prometheusrule.yaml",
             "monitoring-dashboards.yaml"]


def _strict(schema: Any) -> Any:
    """Reject unknown fields: additionalProperties=false wherever the CRD lists properties
    and does not ask to preserve unknown fields (as the API server prunes/rejects them)."""
    if isinstance(schema, dict):
        out = {k: _strict(v) for k, v in schema.items()}
        if ("properties" in out and "additionalProperties" not in out
                and not out.get("x-kubernetes-preserve-unknown-fields")):
            out["additionalProperties"] = False
        return out
    if isinstance(schema, list):
        return [_strict(v) for v in schema]
    return schema


def _crd_validator(filename: str) -> jsonschema.Draft7Validator:
    crd = yaml.safe_load((PROM_OPERATOR_CRDS / filename).read_text())
    version = next(v for v in crd["spec"]["versions"] if v["name"] == "v1")
    return jsonschema.Draft7Validator(_strict(version["schema"]["openAPIV3Schema"]))


def _render(values: dict[str, Any] | None, tmp_path: Path) -> list[dict[str, Any]]:
    """Render only the monitoring templates (with the chart's real helpers, values and files):
    the full chart needs values generated from configs/ that this test does not own."""
    chart = tmp_path / "chart"
    (chart / "templates").mkdir(parents=True)
    for name in ("Chart.yaml", "values.yaml", "values.schema.json"):
        if (CHART / name).exists():
            shutil.copy(CHART / name, chart / name)
    for name in TEMPLATES:
        shutil.copy(CHART / "templates" / name, chart / "templates" / name)
    shutil.copytree(CHART / "files", chart / "files")
    manifests = Chart.load(chart).render(values or {}, name="tierserve", namespace="llm")
    return [doc for text in manifests.values() for doc in yaml.safe_load_all(text) if doc]


@pytest.fixture
def objects(tmp_path: Path) -> list[dict[str, Any]]:
    return _render({"monitoring": {"enabled": True}}, tmp_path)


def _kind(objects: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [o for o in objects if o["kind"] == kind]


def test_disabled_renders_nothing(tmp_path: Path) -> None:
    assert _render({"monitoring": {"enabled": False}}, tmp_path) == []


def test_podmonitors_validate_and_select_head_and_workers(objects: list[dict[str, Any]]) -> None:
    validator = _crd_validator("monitoring.coreos.com_podmonitors.yaml")
    monitors = _kind(objects, "PodMonitor")
    node_types = sorted(m["spec"]["selector"]["matchLabels"]["ray.io/node-type"] for m in monitors)
    assert node_types == ["head", "worker"]
    for m in monitors:
        errors = [e.message for e in validator.iter_errors(m)]
        assert not errors, errors
        assert [e["port"] for e in m["spec"]["podMetricsEndpoints"]] == ["metrics"]
        assert m["spec"]["namespaceSelector"] == {"matchNames": ["llm"]}
        # kube-prometheus-stack finds them by the chart's monitoring selector labels.
        assert m["metadata"]["labels"].items() >= {"tierserve.io/monitoring": "true"}.items()


def test_prometheusrule_validates_and_carries_the_generated_groups(objects: list[dict[str, Any]]) -> None:
    (rule,) = _kind(objects, "PrometheusRule")
    validator = _crd_validator("monitoring.coreos.com_prometheusrules.yaml")
    errors = [e.message for e in validator.iter_errors(rule)]
    assert not errors, errors
    assert rule["spec"] == yaml.safe_load(RULES_FILE.read_text())


def test_validation_rejects_unknown_fields(objects: list[dict[str, Any]]) -> None:
    monitor = copy.deepcopy(_kind(objects, "PodMonitor")[0])
    monitor["spec"]["podMetricsEndpoints"][0]["portName"] = "metrics"
    assert list(_crd_validator("monitoring.coreos.com_podmonitors.yaml").iter_errors(monitor))
    rule = copy.deepcopy(_kind(objects, "PrometheusRule")[0])
    rule["spec"]["groups"][0]["rules"][0]["recorded"] = "x"
    assert list(_crd_validator("monitoring.coreos.com_prometheusrules.yaml").iter_errors(rule))


def test_dashboards_are_configmaps_for_the_grafana_sidecar(objects: list[dict[str, Any]]) -> None:
    maps = _kind(objects, "ConfigMap")
    files = {p.name: json.loads(p.read_text()) for p in DASHBOARDS_DIR.glob("*.json")}
    assert {"tierserve-overview.json", "gpu-dcgm.json"} <= set(files)
    seen = {}
    for cm in maps:
        assert cm["metadata"]["labels"]["grafana_dashboard"] == "1"
        for key, text in cm["data"].items():
            seen[key] = json.loads(text)
    assert seen == files


def test_custom_selector_labels_reach_both_kinds(tmp_path: Path) -> None:
    objs = _render({"monitoring": {"enabled": True, "selectorLabels": {"release": "kube-prometheus-stack"}}},
                   tmp_path)
    for o in _kind(objs, "PodMonitor") + _kind(objs, "PrometheusRule"):
        assert o["metadata"]["labels"]["release"] == "kube-prometheus-stack"
