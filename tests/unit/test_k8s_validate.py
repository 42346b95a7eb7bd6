"""The offline validator rejects what an API server would (tooling/k8s/crd.py, tooling/k8s/validate.py)."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from tooling.k8s import crd
from tooling.k8s.render import CHART_DIR, render
from tooling.k8s.validate import lint_chart, validate_builtin, validate_objects


@pytest.fixture(scope="module")
def rayservice() -> dict[str, Any]:
    return next(o for o in render([]).objects if o["kind"] == "RayService")


def _errors(obj: dict[str, Any]) -> str:
    return "\n".join(crd.validate_custom(obj).errors)


def test_reference_crds_are_read_from_shared() -> None:
    assert crd.REFERENCE_DIR == crd.REPO_ROOT.parent / "shared" / "reference"
    assert crd.crd_schema("ray.io", "RayService")["properties"]["spec"]["properties"]["serveConfigV2"]


def test_rendered_rayservice_is_valid_and_cel_is_skipped(rayservice: dict[str, Any]) -> None:
    report = crd.validate_custom(rayservice)
    assert report.errors == []
    assert any("CEL rule not evaluated offline" in s for s in report.skipped)


def test_unknown_fields_are_rejected(rayservice: dict[str, Any]) -> None:
    obj = copy.deepcopy(rayservice)
    obj["spec"]["rayClusterConfig"]["headGroupSpec"]["rayStartParam"] = {}
    obj["metadata"]["lables"] = {}
    errors = _errors(obj)
    assert "'rayStartParam' was unexpected" in errors
    assert "'lables' was unexpected" in errors


def test_defaults_are_applied_before_validation(rayservice: dict[str, Any]) -> None:
    obj = copy.deepcopy(rayservice)
    group = obj["spec"]["rayClusterConfig"]["workerGroupSpecs"][1]
    del group["minReplicas"], group["maxReplicas"]  # required, but defaulted by the CRD
    assert _errors(obj) == ""
    raw = crd.crd_schema("ray.io", "RayService")
    defaulted = crd.apply_defaults(obj, raw)["spec"]["rayClusterConfig"]["workerGroupSpecs"][1]
    assert (defaulted["minReplicas"], defaulted["maxReplicas"], defaulted["numOfHosts"]) == (0, 2147483647, 1)
    del group["groupName"]  # required and not defaulted
    assert "'groupName' is a required property" in _errors(obj)


def test_types_int_or_string_and_int32(rayservice: dict[str, Any]) -> None:
    obj = copy.deepcopy(rayservice)
    group = obj["spec"]["rayClusterConfig"]["workerGroupSpecs"][1]
    limits = group["template"]["spec"]["containers"][0]["resources"]["limits"]
    limits["nvidia.com/gpu"] = "1"  # int-or-string: both forms are fine
    assert _errors(obj) == ""
    limits["nvidia.com/gpu"] = "one"
    group["rayStartParams"]["num-gpus"] = 1
    group["replicas"] = 2**31
    errors = _errors(obj)
    assert "nvidia.com/gpu: 'one' does not match" in errors
    assert "rayStartParams.num-gpus: 1 is not of type 'string'" in errors
    assert "replicas: 2147483648 is greater than the maximum of 2147483647" in errors


def test_nullable() -> None:
    cluster = {"apiVersion": "ray.io/v1", "kind": "RayCluster", "metadata": {"name": "c"},
               "spec": {"headGroupSpec": {"template": {"spec": {"containers": [
                   {"name": "ray-head", "image": "x"}]}}}},
               "status": {"lastUpdateTime": None}}
    assert _errors(cluster) == ""  # lastUpdateTime is nullable
    cluster["spec"]["suspend"] = None  # suspend is not
    assert "spec.suspend: None is not of type 'boolean'" in _errors(cluster)


def test_translation_of_a_small_schema() -> None:
    skipped: list[str] = []
    schema = crd.to_json_schema({"type": "object", "properties": {
        "a": {"type": "object", "properties": {"b": {"type": "string"}}},
        "open": {"type": "object", "x-kubernetes-preserve-unknown-fields": True},
        "port": {"x-kubernetes-int-or-string": True},
        "rule": {"type": "string", "x-kubernetes-validations": [{"rule": "self != ''"}]},
    }}, "", skipped)
    validator = crd._Validator(schema)
    assert validator.is_valid({"a": {"b": "x"}, "open": {"anything": 1}, "port": 80})
    assert validator.is_valid({"port": "http"})
    assert not validator.is_valid({"a": {"c": "x"}})
    assert not validator.is_valid({"port": 1.5})
    assert skipped == [".rule: CEL rule not evaluated offline: self != ''"]


def _podmonitor(**endpoint: Any) -> dict[str, Any]:
    return {"apiVersion": "monitoring.coreos.com/v1", "kind": "PodMonitor",
            "metadata": {"name": "pm", "labels": {"a": "b"}},
            "spec": {"selector": {"matchLabels": {"app": "x"}},
                     "podMetricsEndpoints": [{"port": "metrics", **endpoint}]}}


def test_prometheus_operator_kinds() -> None:
    assert _errors(_podmonitor()) == ""
    assert "'scrapeIntervall' was unexpected" in _errors(_podmonitor(scrapeIntervall="15s"))
    rule = {"apiVersion": "monitoring.coreos.com/v1", "kind": "PrometheusRule", "metadata": {"name": "r"},
            "spec": {"groups": [{"name": "g", "rules": [{"alert": "A", "expr": "up == 0", "for": "5m"}]}]}}
    assert _errors(rule) == ""
    rule["spec"]["groups"][0]["rules"][0]["severity"] = "page"
    assert "'severity' was unexpected" in _errors(rule)
    monitor = {"apiVersion": "monitoring.coreos.com/v1", "kind": "ServiceMonitor", "metadata": {"name": "s"},
               "spec": {"selector": {}, "endpoints": [{"port": "metrics"}]}}
    assert _errors(monitor) == ""


def test_builtin_kinds_strict_and_unknown_schema_fails() -> None:
    pdb = {"apiVersion": "policy/v1", "kind": "PodDisruptionBudget", "metadata": {"name": "p"},
           "spec": {"maxUnavailable": 0, "selector": {"matchLabels": {"a": "b"}}}}
    assert validate_builtin(pdb) == []
    pdb["spec"]["maxUnavaliable"] = 1
    assert "maxUnavaliable" in "".join(validate_builtin(pdb))
    unknown = {"apiVersion": "example.com/v1", "kind": "Widget", "metadata": {"name": "w"}}
    report = validate_objects([unknown])
    assert not report.ok and "Couldn't find schema" in report.errors[0]
    wrong_version = {"apiVersion": "policy/v1beta1", "kind": "PodDisruptionBudget", "metadata": {"name": "p"}}
    assert "Couldn't find schema" in "".join(validate_builtin(wrong_version))


def test_unknown_custom_kind_fails() -> None:
    report = validate_objects([{"apiVersion": "ray.io/v1", "kind": "RayJobz", "metadata": {"name": "j"}}])
    assert not report.ok and "no reference CRD for ray.io/RayJobz" in report.errors[0]


def test_lint_strict() -> None:
    values = render([]).values
    assert lint_chart(values) == []
    broken = dict(values, generated={})  # the chart cannot render without generated values
    problems = lint_chart(broken)
    assert problems and "templates/rayservice.yaml" in problems[0]


def test_plain_helm_without_generated_values_says_what_to_run() -> None:
    import helm_python as helm

    with helm.Chart.load(CHART_DIR) as chart, pytest.raises(helm.HelmError) as info:
        chart.render({}, name="tierserve", namespace="tierserve")
    expected = "generated.serveConfigV2 is missing: render the chart with `tierserve k8s render`"
    assert expected in str(info.value)
