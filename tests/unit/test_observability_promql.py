"""Every PromQL expression in the rules and dashboards parses and reads only metrics that exist."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest
import yaml

from tooling.observability import promtool
from tooling.observability.dashboards import DASHBOARDS, render
from tooling.observability.names import (
    allowed_names,
    declared_metrics,
    exported,
    read_list,
    vllm_names_from_source,
)
from tooling.observability.paths import DASHBOARDS_DIR, DCGM_NAMES_FILE, RULES_FILE, VLLM_NAMES_FILE
from tooling.observability.promql import dashboard_exprs, grafana_to_promql, metric_names, rule_exprs

needs_promtool = pytest.mark.skipif(promtool.promtool_path() is None,
                                    reason="promtool not installed (apt-get install -y prometheus)")


def _rules() -> dict:
    return yaml.safe_load(RULES_FILE.read_text())


def _dashboards() -> list[dict]:
    return [json.loads((DASHBOARDS_DIR / name).read_text()) for name in DASHBOARDS]


def _all_exprs() -> list[tuple[str, str]]:
    exprs = list(rule_exprs(_rules()))
    for d in _dashboards():
        exprs += list(dashboard_exprs(d))
    return exprs


def _recorded() -> set[str]:
    return {r["record"] for g in _rules()["groups"] for r in g["rules"] if "record" in r}


@pytest.mark.parametrize("name", sorted(DASHBOARDS))
def test_checked_in_dashboards_equal_generated(name: str) -> None:
    assert (DASHBOARDS_DIR / name).read_text() == render(DASHBOARDS[name]), \
        f"{name} is stale: run python -m tooling.observability.dashboards --write"


def test_dashboards_have_unique_panel_ids_and_targets() -> None:
    for d in _dashboards():
        ids = [p["id"] for p in d["panels"]]
        assert len(ids) == len(set(ids)), d["title"]
        assert all(p.get("targets") for p in d["panels"] if p["type"] != "row"), d["title"]


def test_overview_covers_the_operator_questions() -> None:
    text = (DASHBOARDS_DIR / "tierserve-overview.json").read_text()
    for needle in ("tierserve_tier:requests:rate5m", "route_decisions_total", "tier_reason",
                   "ttft_seconds:p95", "tpot_seconds:p95", "completion_tokens", "error_ratio",
                   "rejections", "autoscaling_target_replicas", "kv_cache_usage", "queue"):
        assert needle in text, needle
    gpu = (DASHBOARDS_DIR / "gpu-dcgm.json").read_text()
    assert "DCGM_FI_DEV_GPU_UTIL" in gpu and "DCGM_FI_DEV_FB_USED" in gpu


@needs_promtool
def test_every_expression_parses() -> None:
    exprs = _all_exprs()
    assert len(exprs) > 50
    failures = promtool.check_exprs(exprs)
    assert not failures, "\n\n".join(f"{w}: {e}" for w, e in failures.items())


@needs_promtool
def test_expression_check_can_fail() -> None:
    assert promtool.check_exprs([("bad", "rate(ray_tierserve_requests_total[5m]")])


def test_every_metric_name_exists() -> None:
    allowed = set().union(*allowed_names().values()) | _recorded()
    unknown = {(where, name) for where, expr in _all_exprs() for name in metric_names(expr)
               if name not in allowed}
    assert not unknown, sorted(unknown)


def test_name_check_rejects_a_made_up_metric() -> None:
    allowed = set().union(*allowed_names().values())
    assert "ray_tierserve_requests" not in allowed  # the counter is only exported with _total
    assert "ray_vllm_kv_cache_usage_perc" in allowed and "ray_serve_deployment_queued_queries" in allowed


def test_vllm_and_dcgm_lists_are_all_used() -> None:
    used = {n for _, e in _all_exprs() for n in metric_names(e)}
    assert not read_list(VLLM_NAMES_FILE) - used, "vllm-metric-names.txt lists names nothing reads"
    assert not read_list(DCGM_NAMES_FILE) - used, "dcgm-metric-names.txt lists names nothing reads"


def test_vllm_list_matches_installed_vllm() -> None:
    spec = importlib.util.find_spec("vllm")
    if spec is None or spec.origin is None:
        pytest.skip("vLLM not installed: cannot re-derive ray_vllm_* names (pip install -e .[cpu])")
    source = (Path(spec.origin).parent / "v1" / "metrics" / "loggers.py").read_text()
    missing = read_list(VLLM_NAMES_FILE) - vllm_names_from_source(source)
    assert not missing, f"not declared by the installed vLLM: {sorted(missing)}"


@pytest.mark.parametrize("expr, names", [
    ('sum by (tier) (rate(ray_tierserve_requests_total{status=~"5.."}[5m]))',
     {"ray_tierserve_requests_total"}),
    ('label_replace(a_metric, "replica", "$1", "ReplicaId", "(.+)") * on (replica) group_left (tier) b:rec',
     {"a_metric", "b:rec"}),
    ("histogram_quantile(0.95, sum by (le) (rate(x_bucket[5m] offset 1h))) > 1e3 and up", {"x_bucket", "up"}),
    ("(x or on () vector(0)) / on () y < 0.05", {"x", "y"}),
])
def test_metric_names(expr: str, names: set[str]) -> None:
    assert metric_names(expr) == names


def test_grafana_variables_are_replaced() -> None:
    assert grafana_to_promql('rate(x{tier=~"$tier"}[$__rate_interval])') == 'rate(x{tier=~".*"}[5m])'


def test_exported_names_follow_ray() -> None:
    assert exported("tierserve_requests_total", "counter") == ["ray_tierserve_requests_total"]
    assert exported("vllm:prompt_tokens", "counter") == ["ray_vllm_prompt_tokens_total"]
    assert exported("vllm:iteration_tokens_total", "histogram")[0] == "ray_vllm_iteration_tokens_total_bucket"
    assert exported("tierserve_in_flight_requests", "gauge") == ["ray_tierserve_in_flight_requests"]


def test_declared_metrics_reads_calls() -> None:
    src = ('from ray.util import metrics\nc = metrics.Counter("a_total", "d")\n'
           'h = metrics.Histogram("b", "d", boundaries=[1])\n')
    assert declared_metrics(src) == [("a_total", "counter"), ("b", "histogram")]
