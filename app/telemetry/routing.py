"""The router's span: one decision, with each routing plugin's part as a child span (laid end
to end from the decision's start, from the durations the plugins report)."""

from __future__ import annotations

from typing import Any

from app.telemetry.tracing import Tracing, now_ns, traceparent


def decision_span(tracing: Tracing, parent: str | None, decision: Any, start_ns: int) -> None:
    end_ns = now_ns()
    span = tracing.start("router.decide", parent, start_ns=start_ns, attributes={
        "tierserve.tier": decision.tier, "tierserve.route_reason": decision.reason,
        "tierserve.score": decision.score, "tierserve.threshold": decision.threshold,
        "tierserve.matched_rules": list(decision.matched_rules),
        "tierserve.fallbacks": list(decision.fallbacks),
        "tierserve.affinity_hit": decision.affinity_hit,
        "tierserve.decision_ms": round(decision.decision_ms, 3),
        "tierserve.scorer_version": getattr(decision, "scorer_version", None)})
    parent_of_plugins = traceparent(span)
    at = start_ns
    for c in getattr(decision, "contributions", None) or []:
        took = int(c.ms * 1e6)
        child = tracing.start(f"router.plugin {c.plugin}", parent_of_plugins, start_ns=at, attributes={
            "tierserve.plugin": c.plugin, "tierserve.plugin.kind": c.kind,
            "tierserve.plugin.outcome": c.outcome, "tierserve.plugin.value": c.value,
            "tierserve.plugin.weight": c.weight, "tierserve.plugin.ms": c.ms})
        at = min(at + took, end_ns)
        child.end(end_time=at)
    span.end(end_time=end_ns)
