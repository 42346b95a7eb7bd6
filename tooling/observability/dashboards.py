"""Generate the Grafana dashboards (JSON) that the chart provisions as ConfigMaps.

Built from small helpers so every panel has the same shape; the checked-in files
under kuberay/chart/files/monitoring/dashboards/ must equal this output.

    python -m tooling.observability.dashboards --write | --check
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass, field
from typing import Any

from tooling.observability.paths import DASHBOARDS_DIR

DS = {"type": "prometheus", "uid": "${datasource}"}
RATE = "$__rate_interval"
APP = 'application="tierserve"'
TIER = 'tier=~"$tier"'


@dataclass
class Panel:
    title: str
    queries: list[tuple[str, str]]  # (PromQL, legend)
    unit: str = "short"
    description: str = ""
    kind: str = "timeseries"
    width: int = 12
    extra: dict[str, Any] = field(default_factory=dict)


def _q(expr: str, legend: str) -> tuple[str, str]:
    return expr, legend


def _layout(sections: list[tuple[str, list[Panel]]]) -> list[dict[str, Any]]:
    """Rows of panels, laid out left to right, 8 units high."""
    out: list[dict[str, Any]] = []
    y, pid = 0, 1
    for row_title, panels in sections:
        out.append({"type": "row", "title": row_title, "id": pid, "collapsed": False,
                    "gridPos": {"h": 1, "w": 24, "x": 0, "y": y}, "panels": []})
        pid, y, x = pid + 1, y + 1, 0
        for p in panels:
            if x + p.width > 24:
                x, y = 0, y + 8
            out.append({
                "type": p.kind, "title": p.title, "id": pid, "description": p.description,
                "datasource": DS, "gridPos": {"h": 8, "w": p.width, "x": x, "y": y},
                "fieldConfig": {"defaults": {"unit": p.unit}, "overrides": []},
                "options": {"legend": {"displayMode": "table", "placement": "bottom", "calcs": ["lastNotNull", "max"]}},
                "targets": [{"datasource": DS, "expr": e, "legendFormat": leg, "refId": chr(65 + i)}
                            for i, (e, leg) in enumerate(p.queries)],
                **p.extra,
            })
            pid, x = pid + 1, x + p.width
        y += 8
    return out


def _dashboard(uid: str, title: str, tags: list[str], variables: list[dict[str, Any]],
               sections: list[tuple[str, list[Panel]]]) -> dict[str, Any]:
    ds_var = {"name": "datasource", "label": "Prometheus", "type": "datasource", "query": "prometheus",
              "current": {}, "hide": 0}
    return {
        "uid": uid, "title": title, "tags": tags, "schemaVersion": 39, "version": 1,
        "editable": True, "timezone": "browser", "refresh": "30s",
        "time": {"from": "now-1h", "to": "now"},
        "templating": {"list": [ds_var, *variables]},
        "annotations": {"list": []},
        "panels": _layout(sections),
    }


def _query_var(name: str, label: str, query: str) -> dict[str, Any]:
    return {"name": name, "label": label, "type": "query", "datasource": DS,
            "query": {"query": query, "refId": "var"}, "definition": query,
            "includeAll": True, "multi": True, "allValue": ".*", "refresh": 2, "current": {}, "hide": 0}


def _pq(metric: str, q: str, by: str = "") -> str:
    """A quantile from buckets (never from `_sum`, which Ray rebuilds from bucket midpoints)."""
    group = f"{by}, le" if by else "le"
    return f"histogram_quantile({q}, sum by ({group}) (rate({metric}_bucket[{RATE}])))"


def overview() -> dict[str, Any]:
    traffic = [
        Panel("Requests/s by tier", [_q(f"tierserve_tier:requests:rate5m{{{TIER}}}", "{{tier}}")], "reqps"),
        Panel("Routing mix (share of decisions)", [_q(
            f"sum by (tier) (rate(ray_tierserve_route_decisions_total[{RATE}])) / ignoring (tier) group_left "
            f"sum(rate(ray_tierserve_route_decisions_total[{RATE}]))", "{{tier}}")], "percentunit"),
        Panel("Routing threshold (per router replica)", [
            _q("ray_tierserve_route_threshold", "boundary {{boundary}} · {{ReplicaId}}")], "short",
           description="The picker's threshold; the cost-budget picker moves it to hold its spend target."),
        Panel("Requests/s by tier and route reason",
              [_q(f"tierserve_tier_reason:requests:rate5m{{{TIER}}}", "{{tier}} · {{reason}}")], "reqps"),
        Panel("Fallbacks and retries/s", [
            _q(f"sum by (from_tier, to_tier, cause) (rate(ray_tierserve_fallbacks_total[{RATE}]))",
               "fallback {{from_tier}}→{{to_tier}} ({{cause}})"),
            _q(f"sum by (tier) (rate(ray_tierserve_retries_total{{{TIER}}}[{RATE}]))", "retry {{tier}}")], "ops"),
        Panel("Router decision latency and affinity", [
            _q(_pq("ray_tierserve_route_decision_seconds", "0.5"), "p50"),
            _q("tierserve:route_decision_seconds:p95_5m", "p95")], "s",
           description="Time the router spends per decision (routing overhead)."),
        Panel("In flight", [
            _q("sum(ray_tierserve_in_flight_requests)", "ingress in flight"),
            _q(f"sum by (tier) (rate(ray_tierserve_affinity_hits_total[{RATE}]))", "affinity hits/s {{tier}}"),
            # Serve's HTTP-ongoing gauge is absent in HAProxy mode (configs/server.yaml ray_serve).
            _q(f'sum(ray_serve_replica_processing_queries{{{APP},deployment="ingress"}})',
               "ingress replicas processing")], "short"),
    ]
    latency = [
        Panel("TTFT per tier (ingress)", [
            _q(f"tierserve_tier:ttft_seconds:p50_5m{{{TIER}}}", "p50 {{tier}}"),
            _q(f"tierserve_tier:ttft_seconds:p95_5m{{{TIER}}}", "p95 {{tier}}")], "s"),
        Panel("Time per output token per tier (ingress)", [
            _q(f"tierserve_tier:tpot_seconds:p50_5m{{{TIER}}}", "p50 {{tier}}"),
            _q(f"tierserve_tier:tpot_seconds:p95_5m{{{TIER}}}", "p95 {{tier}}")], "s"),
        Panel("End-to-end latency per tier (ingress)", [
            _q(f"tierserve_tier:request_latency_seconds:p50_5m{{{TIER}}}", "p50 {{tier}}"),
            _q(f"tierserve_tier:request_latency_seconds:p95_5m{{{TIER}}}", "p95 {{tier}}")], "s"),
        Panel("Where TTFT goes (p95): routing, engine queue, engine", [
            _q(f"tierserve_tier:ttft_seconds:p95_5m{{{TIER}}}", "ingress TTFT {{tier}}"),
            _q("tierserve:route_decision_seconds:p95_5m", "router decision"),
            _q(_pq("ray_vllm_request_queue_time_seconds", "0.95", "model_name"), "vLLM queue {{model_name}}"),
            _q(_pq("ray_vllm_time_to_first_token_seconds", "0.95", "model_name"), "vLLM TTFT {{model_name}}")], "s",
              description="Ingress TTFT far above vLLM TTFT points at routing/Serve queues; vLLM queue time "
                          "near vLLM TTFT points at capacity; both low with high ingress TTFT: the graph itself."),
        Panel("vLLM engine latency (p95)", [
            _q(_pq("ray_vllm_inter_token_latency_seconds", "0.95", "model_name"), "inter-token {{model_name}}"),
            _q(_pq("ray_vllm_e2e_request_latency_seconds", "0.95", "model_name"), "end-to-end {{model_name}}")], "s",
              description="Engine-side view, by served model; compare with the ingress panels above."),
    ]
    tokens = [
        Panel("Tokens/s per tier", [
            _q(f"tierserve_tier:prompt_tokens:rate5m{{{TIER}}}", "prompt {{tier}}"),
            _q(f"tierserve_tier:completion_tokens:rate5m{{{TIER}}}", "completion {{tier}}")], "short"),
        Panel("vLLM engine tokens/s and prefix cache", [
            _q(f"sum by (model_name) (rate(ray_vllm_generation_tokens_total[{RATE}]))", "generated {{model_name}}"),
            _q(f"sum by (model_name) (rate(ray_vllm_prompt_tokens_total[{RATE}]))", "prompt {{model_name}}"),
            _q(f"sum by (model_name) (rate(ray_vllm_prefix_cache_hits_total[{RATE}])) / sum by (model_name) "
               f"(rate(ray_vllm_prefix_cache_queries_total[{RATE}]))", "prefix hit ratio {{model_name}}")], "short"),
    ]
    errors = [
        Panel("Error ratio (5xx) and requests by status", [
            _q("tierserve:error_ratio:rate5m", "5xx ratio"),
            _q(f"sum by (status) (rate(ray_tierserve_requests_total{{{TIER}}}[{RATE}]))", "{{status}}/s")], "short"),
        Panel("Rejections/s by cause", [_q("tierserve_cause:rejections:rate5m", "{{cause}}")], "reqps",
              description="Refused before reaching a tier: auth, rate limit, validation, overload."),
        Panel("Serve errors", [
            _q(f"sum by (deployment) (rate(ray_serve_deployment_error_counter_total{{{APP}}}[{RATE}]))",
               "replica errors {{deployment}}"),
            _q(f"sum by (error_code) (rate(ray_serve_num_http_error_requests_total[{RATE}]))",
               "proxy HTTP {{error_code}}")], "ops"),
        Panel("Firing Tierserve alerts", [_q('sum by (alertname, tier) (ALERTS{alertstate="firing", alertname=~"Tierserve.*"})',
                                             "{{alertname}} {{tier}}")], "short"),
    ]
    capacity = [
        Panel("Replicas: healthy vs autoscaling target", [
            _q(f"sum by (deployment) (ray_serve_deployment_replica_healthy{{{APP}}})", "healthy {{deployment}}"),
            _q(f"max by (deployment) (ray_serve_autoscaling_target_replicas{{{APP}}})", "target {{deployment}}"),
            _q(f"max by (deployment) (ray_serve_autoscaling_desired_replicas{{{APP}}})", "desired {{deployment}}")], "short"),
        Panel("Ongoing requests per deployment vs autoscaling target", [
            _q(f"sum by (deployment) (ray_serve_replica_processing_queries{{{APP}}})", "ongoing {{deployment}}"),
            _q(f"max by (deployment) (ray_serve_autoscaling_target_ongoing_requests{{{APP}}})",
               "target per replica {{deployment}}")], "short"),
        Panel("Queue per tier", [
            _q(f"tierserve_tier:serve_queued_requests:sum{{{TIER}}}", "Serve handle queue {{tier}}"),
            _q(f"tierserve_tier:vllm_waiting_requests:sum{{{TIER}}}", "vLLM waiting {{tier}}"),
            _q(f"tierserve_tier:vllm_running_requests:sum{{{TIER}}}", "vLLM running {{tier}}")], "short"),
        Panel("KV cache usage and preemptions", [
            _q(f"tierserve_tier:kv_cache_usage:max{{{TIER}}}", "worst replica {{tier}}"),
            _q("max by (model_name) (ray_vllm_kv_cache_usage_perc)", "max {{model_name}}"),
            _q(f"sum by (model_name) (rate(ray_vllm_num_preemptions_total[{RATE}]))", "preemptions/s {{model_name}}")],
              "percentunit"),
    ]
    return _dashboard("tierserve-overview", "Tierserve overview", ["tierserve"],
                      [_query_var("tier", "Tier", "label_values(ray_tierserve_requests_total, tier)")],
                      [("Traffic and routing", traffic), ("Latency", latency), ("Tokens", tokens),
                       ("Errors and rejections", errors), ("Capacity", capacity)])


def gpu_dcgm() -> dict[str, Any]:
    sel = 'Hostname=~"$node"'
    leg = "{{Hostname}} GPU {{gpu}}"
    util = [
        Panel("GPU utilization", [_q(f"DCGM_FI_DEV_GPU_UTIL{{{sel}}}", leg)], "percent"),
        Panel("Memory copy utilization", [_q(f"DCGM_FI_DEV_MEM_COPY_UTIL{{{sel}}}", leg)], "percent"),
        Panel("Framebuffer used", [_q(f"DCGM_FI_DEV_FB_USED{{{sel}}} * 1024 * 1024", leg)], "bytes"),
        Panel("Framebuffer used fraction", [_q(
            f"DCGM_FI_DEV_FB_USED{{{sel}}} / (DCGM_FI_DEV_FB_USED{{{sel}}} + DCGM_FI_DEV_FB_FREE{{{sel}}})", leg)],
              "percentunit"),
    ]
    stuck = [
        Panel("Busy but not generating? (utilization vs tokens)", [
            _q(f"avg(DCGM_FI_DEV_GPU_UTIL{{{sel}}}) / 100", "mean GPU utilization"),
            _q(f"sum by (model_name) (rate(ray_vllm_generation_tokens_total[{RATE}])) > bool 0",
               "generating {{model_name}} (1 = yes)")], "percentunit",
              description="High utilization while an engine stops generating tokens suggests a stuck GPU/engine; "
                          "low utilization with a long vLLM queue suggests a scheduling or CPU bottleneck."),
        Panel("XID errors (last value)", [_q(f"max by (Hostname, gpu) (DCGM_FI_DEV_XID_ERRORS{{{sel}}})", leg)],
              "short"),
    ]
    health = [
        Panel("Power draw", [_q(f"DCGM_FI_DEV_POWER_USAGE{{{sel}}}", leg)], "watt"),
        Panel("Temperature", [_q(f"DCGM_FI_DEV_GPU_TEMP{{{sel}}}", leg)], "celsius"),
        Panel("SM clock", [_q(f"DCGM_FI_DEV_SM_CLOCK{{{sel}}} * 1000000", leg)], "hertz"),
        Panel("PCIe throughput", [
            _q(f"rate(DCGM_FI_DEV_PCIE_TX_THROUGHPUT{{{sel}}}[{RATE}]) * 1024", "tx " + leg),
            _q(f"rate(DCGM_FI_DEV_PCIE_RX_THROUGHPUT{{{sel}}}[{RATE}]) * 1024", "rx " + leg)], "Bps"),
    ]
    return _dashboard("tierserve-gpu-dcgm", "Tierserve GPUs (DCGM)", ["tierserve", "gpu"],
                      [_query_var("node", "Node", "label_values(DCGM_FI_DEV_GPU_UTIL, Hostname)")],
                      [("Saturation", util), ("Stuck or erroring", stuck), ("Power and thermals", health)])


DASHBOARDS = {"tierserve-overview.json": overview, "gpu-dcgm.json": gpu_dcgm}


def render(build: Any) -> str:
    return json.dumps(build(), indent=2, ensure_ascii=False) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    mode = parser.add_mutually_exclusive_group(required=True)
    mode.add_argument("--write", action="store_true")
    mode.add_argument("--check", action="store_true")
    args = parser.parse_args(argv)
    stale = []
    for name, build in DASHBOARDS.items():
        path, text = DASHBOARDS_DIR / name, render(build)
        if args.write:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text)
        elif not path.exists() or path.read_text() != text:
            stale.append(str(path))
    if stale:
        print("stale dashboards (run python -m tooling.observability.dashboards --write): " + ", ".join(stale),
              file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
