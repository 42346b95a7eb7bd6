"""Generate prometheus-rules.yaml (recording rules + SLO alerts) from slo.yaml.

The generated file is a plain Prometheus rule file: promtool and the local
Prometheus read it as is, and the chart embeds its `groups` in a PrometheusRule.

    python -m tooling.observability.rules --write     # regenerate after editing slo.yaml
    python -m tooling.observability.rules --check     # exit 1 if the checked-in file is stale
    python -m tooling.observability.rules --markdown  # alert table for the README
"""

from __future__ import annotations

import argparse
import re
import sys
from typing import Any

import yaml

from tooling.observability.paths import RULES_FILE, SLO_FILE
from tooling.observability.slo import SLO, load_slo

Rule = dict[str, Any]

HEADER = ("# Generated from slo.yaml by `python -m tooling.observability.rules --write`. Do not edit by hand.\n"
          "# Ray exports Tierserve's metrics with a `ray_` prefix (see deployments/metrics.py).\n")

REQ = "ray_tierserve_requests_total"


def _num(x: float) -> str:
    """1.0 -> '1', 0.05 -> '0.05': stable, short numbers in expressions."""
    return f"{x:g}"


def _record(name: str, expr: str) -> Rule:
    return {"record": name, "expr": expr}


def _alert(name: str, expr: str, for_: str, severity: str, summary: str, description: str,
           first_response: str, labels: dict[str, str] | None = None) -> Rule:
    return {"alert": name, "expr": expr, "for": for_,
            "labels": {"severity": severity, **(labels or {})},
            "annotations": {"summary": summary, "description": description,
                            "first_response": first_response}}


def _quantiles(metric: str, short: str) -> list[Rule]:
    # Quantiles from buckets only: Ray rebuilds `_sum` from bucket midpoints, so no means here.
    return [_record(f"tierserve_tier:{short}:p{q}_5m",
                    f"histogram_quantile(0.{q}, sum by (tier, le) (rate({metric}_bucket[5m])))")
            for q in ("50", "95")]


def _by_tier(slo: SLO, metric: str) -> str:
    """A Serve metric of the tier deployments, with a `tier` label taken from the deployment name."""
    rx = slo.deployment_regex()
    return (f'label_replace({metric}{{application="{slo.application}", deployment=~"{rx}"}}, '
            f'"tier", "$1", "deployment", "{rx}")')


def _vllm_by_tier(metric: str) -> str:
    """A vLLM engine metric joined to its tier via the replica id both carry."""
    return (f'label_replace({metric}, "replica", "$1", "ReplicaId", "(.+)") '
            f"* on (replica) group_left (tier) tierserve:replica_tier:info")


def recording_rules(slo: SLO) -> list[Rule]:
    win = slo.get("no_traffic", "window")
    return [
        _record("tierserve:requests:rate5m", f"sum(rate({REQ}[5m]))"),
        _record("tierserve_tier:requests:rate5m", f"sum by (tier) (rate({REQ}[5m]))"),
        _record("tierserve_tier_status:requests:rate5m", f"sum by (tier, status) (rate({REQ}[5m]))"),
        _record("tierserve_tier_reason:requests:rate5m", f"sum by (tier, reason) (rate({REQ}[5m]))"),
        _record(f"tierserve:requests:rate{win}", f"sum(rate({REQ}[{win}]))"),
        _record(f"tierserve_tier:requests:rate{win}", f"sum by (tier) (rate({REQ}[{win}]))"),
        # `or vector(0)`: no 5xx series yet means a ratio of 0, not a missing one.
        _record("tierserve:errors:rate5m", f'sum(rate({REQ}{{status=~"5.."}}[5m])) or vector(0)'),
        _record("tierserve:errors:rate1h", f'sum(rate({REQ}{{status=~"5.."}}[1h])) or vector(0)'),
        _record("tierserve:error_ratio:rate5m", "tierserve:errors:rate5m / tierserve:requests:rate5m"),
        _record("tierserve:error_ratio:rate1h",
                f"tierserve:errors:rate1h / sum(rate({REQ}[1h]))"),
        _record("tierserve_cause:rejections:rate5m",
                "sum by (cause) (rate(ray_tierserve_rejections_total[5m]))"),
        *_quantiles("ray_tierserve_ttft_seconds", "ttft_seconds"),
        *_quantiles("ray_tierserve_tpot_seconds", "tpot_seconds"),
        *_quantiles("ray_tierserve_request_latency_seconds", "request_latency_seconds"),
        _record("tierserve:route_decision_seconds:p95_5m",
                "histogram_quantile(0.95, sum by (le) (rate(ray_tierserve_route_decision_seconds_bucket[5m])))"),
        _record("tierserve_tier:prompt_tokens:rate5m",
                "sum by (tier) (rate(ray_tierserve_prompt_tokens_total[5m]))"),
        _record("tierserve_tier:completion_tokens:rate5m",
                "sum by (tier) (rate(ray_tierserve_completion_tokens_total[5m]))"),
        _record("tierserve_tier:route_decisions:rate5m",
                "sum by (tier) (rate(ray_tierserve_route_decisions_total[5m]))"),
        _record("tierserve_tier:fallbacks:rate5m",
                'sum by (tier) (label_replace(rate(ray_tierserve_fallbacks_total[5m]), "tier", "$1", "from_tier", "(.*)"))'),
        _record("tierserve_tier:fallback_ratio:rate5m",
                "tierserve_tier:fallbacks:rate5m / tierserve_tier:route_decisions:rate5m"),
        # replica id -> tier, from the Serve controller's per-replica health gauge.
        _record("tierserve:replica_tier:info",
                f"group by (replica, deployment, tier) ({_by_tier(slo, 'ray_serve_deployment_replica_healthy')})"),
        _record("tierserve_tier:healthy_replicas:sum",
                f"sum by (tier) ({_by_tier(slo, 'ray_serve_deployment_replica_healthy')})"),
        _record("tierserve_tier:serve_queued_requests:sum",
                f"sum by (tier) ({_by_tier(slo, 'ray_serve_deployment_queued_queries')})"),
        _record("tierserve_tier:vllm_waiting_requests:sum",
                f"sum by (tier) ({_vllm_by_tier('ray_vllm_num_requests_waiting')})"),
        _record("tierserve_tier:vllm_running_requests:sum",
                f"sum by (tier) ({_vllm_by_tier('ray_vllm_num_requests_running')})"),
        _record("tierserve_tier:kv_cache_usage:max",
                f"max by (tier) ({_vllm_by_tier('ray_vllm_kv_cache_usage_perc')})"),
        # Distinct `source` labels keep `or` from dropping one side before the sum.
        _record("tierserve_tier:queue_depth:sum",
                'sum by (tier) (label_replace(tierserve_tier:serve_queued_requests:sum, "source", "serve", "", "") '
                'or label_replace(tierserve_tier:vllm_waiting_requests:sum, "source", "vllm", "", ""))'),
    ]


def alert_rules(slo: SLO) -> list[Rule]:
    t = slo.get
    app = slo.application
    min_rps = _num(slo.min_request_rate)
    win = t("no_traffic", "window")
    rules: list[Rule] = []
    for tier in slo.tiers:
        rules.append(_alert(
            "TierserveTTFTP95High",
            f'tierserve_tier:ttft_seconds:p95_5m{{tier="{tier.name}"}} > {_num(tier.ttft_p95_seconds)}'
            f' and on (tier) tierserve_tier:requests:rate5m > {min_rps}',
            t("ttft", "for"), "warning",
            f"p95 time to first token on tier {tier.name} is above its SLO",
            "p95 TTFT at the ingress is {{ $value | humanizeDuration }} on tier {{ $labels.tier }} "
            f"(SLO {_num(tier.ttft_p95_seconds)}s).",
            "Open the overview dashboard: if the tier's queue and KV cache are high, it needs replicas "
            "(check autoscaling target vs max); if not, look at GPU panels for a slow or stuck device.",
            {"tier": tier.name}))
    rules.append(_alert(
        "TierserveErrorRatioHigh",
        f"tierserve:error_ratio:rate5m > {_num(t('error_ratio', 'max'))}"
        f" and tierserve:error_ratio:rate1h > {_num(t('error_ratio', 'max'))}",
        t("error_ratio", "for"), "critical",
        "Too many requests end in HTTP 5xx",
        "5xx ratio is {{ $value | humanizePercentage }} over 5m (and above the SLO over 1h).",
        "Split errors by tier and status on the dashboard; read the ingress JSON logs for the failing "
        "tier; check replica health and recent deploys (roll back if it started with one)."))
    for tier in slo.tiers:
        rules.append(_alert(
            "TierserveTierQueueBacklog",
            f'tierserve_tier:queue_depth:sum{{tier="{tier.name}"}} > {_num(tier.max_queue_depth)}',
            t("queue", "for"), "warning",
            f"Requests are piling up in front of tier {tier.name}",
            "{{ $value }} requests wait in the Serve handle queue or vLLM's scheduler for tier {{ $labels.tier }} "
            f"(limit {_num(tier.max_queue_depth)}).",
            "Compare autoscaling target replicas with running replicas; if at max, raise max_replicas "
            "or shift traffic (router threshold); if replicas are pending, check GPU node capacity.",
            {"tier": tier.name}))
    rules.append(_alert(
        "TierserveKVCacheSaturated",
        f"tierserve_tier:kv_cache_usage:max > {_num(t('kv_cache', 'max_usage'))}",
        t("kv_cache", "for"), "warning",
        "vLLM KV cache is nearly full on tier {{ $labels.tier }}",
        "Worst replica's KV cache usage is {{ $value | humanizePercentage }}; expect preemptions and rising TTFT.",
        "Check preemptions and long prompts on the dashboard; add replicas, lower max_num_seqs or "
        "raise gpu_memory_utilization for the tier."))
    rules.append(_alert(
        "TierserveReplicaUnhealthy",
        f'count by (application, deployment) (ray_serve_deployment_replica_healthy{{application="{app}"}} == 0) > 0',
        t("unhealthy_replica", "for"), "warning",
        "Replicas of deployment {{ $labels.deployment }} fail health checks",
        "Serve reports {{ $value }} unhealthy replica(s) for deployment {{ $labels.deployment }}.",
        "Open the Ray dashboard's Serve page for the replica's logs; look for OOM, CUDA or engine "
        "errors; Serve restarts failed replicas, so a persistent alert means a crash loop."))
    rules.append(_alert(
        "TierserveTierDown",
        "tierserve_tier:healthy_replicas:sum < 1",
        t("tier_down", "for"), "critical",
        "Tier {{ $labels.tier }} has no healthy replica",
        "Every request routed to tier {{ $labels.tier }} fails or falls back.",
        "Check the tier's replica logs and GPU node; the router falls back meanwhile, so watch the "
        "other tier's queue; if it cannot recover, force traffic away with the router config."))
    for tier in slo.tiers:
        share = _num(tier.min_traffic_share)
        rules.append(_alert(
            "TierserveTierNoTraffic",
            f'(tierserve_tier:requests:rate{win}{{tier="{tier.name}"}} or on () vector(0))'
            f" / on () tierserve:requests:rate{win} < {share}"
            f" and on () tierserve:requests:rate{win} > {min_rps}",
            t("no_traffic", "for"), "warning",
            f"Tier {tier.name} gets less than its minimum share of traffic",
            f"Tier {tier.name} served {{{{ $value | humanizePercentage }}}} of requests over {win} (floor {share}).",
            "Look at the routing-mix and reason panels: a mis-calibrated threshold, a broken rule, "
            "a failing tier (check fallbacks) or a client pinning `model` can starve a tier.",
            {"tier": tier.name}))
    rules.append(_alert(
        "TierserveFallbackStorm",
        f"tierserve_tier:fallback_ratio:rate5m > {_num(t('fallback_storm', 'max_ratio'))}"
        f" and on (tier) tierserve_tier:fallbacks:rate5m > {_num(t('fallback_storm', 'min_rate'))}",
        t("fallback_storm", "for"), "warning",
        "Requests routed to tier {{ $labels.tier }} keep falling back",
        "{{ $value | humanizePercentage }} of decisions for tier {{ $labels.tier }} moved to another tier.",
        "The source tier is failing before the first token: check its health, queue and logs; the "
        "target tier now carries the load, so watch its queue too."))
    cause = t("overload", "cause")
    rejected = f'tierserve_cause:rejections:rate5m{{cause="{cause}"}}'
    rules.append(_alert(
        "TierserveOverloadShedding",
        f"{rejected} / ignoring (cause) (tierserve:requests:rate5m + ignoring (cause) {rejected})"
        f" > {_num(t('overload', 'max_ratio'))}",
        t("overload", "for"), "warning",
        "The ingress sheds load (overload rejections)",
        "{{ $value | humanizePercentage }} of requests are refused with cause " + cause + ".",
        "Capacity is short: check in-flight requests against max_in_flight and tier queues; scale the "
        "ingress or tiers, or raise limits if the tiers have headroom."))
    return rules


def build_rules(slo: SLO) -> dict[str, Any]:
    return {"groups": [
        {"name": "tierserve.recording", "rules": recording_rules(slo)},
        {"name": "tierserve.alerts", "rules": alert_rules(slo)},
    ]}


def render_rules(slo: SLO) -> str:
    return HEADER + yaml.safe_dump(build_rules(slo), sort_keys=False, width=1000)


_TEMPLATE_LABEL = re.compile(r"\{\{ \$labels\.(\w+) \}\}")


def alerts_markdown(slo: SLO) -> str:
    """One row per alert name, for the README's Observability section."""
    rows = ["| Alert | Severity | Meaning | First response |", "| --- | --- | --- | --- |"]
    seen: set[str] = set()
    for rule in alert_rules(slo):
        if rule["alert"] in seen:
            continue
        seen.add(rule["alert"])
        ann = rule["annotations"]
        meaning = _TEMPLATE_LABEL.sub(r"<\1>", ann["summary"])
        if "tier" in rule["labels"]:
            meaning = re.sub(rf"\b{re.escape(rule['labels']['tier'])}\b", "<tier>", meaning) + " (per tier)"
        rows.append(f"| `{rule['alert']}` | {rule['labels']['severity']} | {meaning} | {ann['first_response']} |")
    return "\n".join(rows) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    mode = parser.add_mutually_exclusive_group(required=True)
    mode.add_argument("--write", action="store_true")
    mode.add_argument("--check", action="store_true")
    mode.add_argument("--markdown", action="store_true")
    args = parser.parse_args(argv)
    slo = load_slo(SLO_FILE)
    text = render_rules(slo)
    if args.markdown:
        sys.stdout.write(alerts_markdown(slo))
    elif args.write:
        RULES_FILE.write_text(text)
    elif not RULES_FILE.exists() or RULES_FILE.read_text() != text:
        print(f"{RULES_FILE} is stale: run python -m tooling.observability.rules --write", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
