"""Tierserve's own metrics, recorded through Ray's metrics API.

Ray exports them on each node's metrics port with a `ray_` prefix, e.g.
`tierserve_requests_total` appears as `ray_tierserve_requests_total`.
Labels are bounded: tier, endpoint, status code, route reason kind, cause, team.
No request ids, key ids, prompts or session ids.
"""

from __future__ import annotations

# Serve's wrappers add bounded deployment/replica/application labels.
from ray.serve import metrics

# Seconds. Spans CPU tiny models (ms) to GPU 8B models under load (tens of s).
LATENCY_BUCKETS = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60]
TOKEN_LATENCY_BUCKETS = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1]
DECISION_BUCKETS = [0.0001, 0.00025, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.1]


def reason_kind(reason: str) -> str:
    """Bounded label for a route reason: 'rule:code-fence' -> 'rule'."""
    return reason.split(":", 1)[0]


class IngressMetrics:
    """Metrics recorded by the ingress for every request."""

    def __init__(self) -> None:
        self.requests = metrics.Counter(
            "tierserve_requests_total", "Requests finished, by tier, endpoint, HTTP status and route reason.",
            tag_keys=("tier", "endpoint", "status", "reason"))
        self.rejections = metrics.Counter(
            "tierserve_rejections_total", "Requests refused before reaching a tier, by cause.",
            tag_keys=("cause",))
        self.ttft = metrics.Histogram(
            "tierserve_ttft_seconds", "Time to first token seen at the ingress.",
            boundaries=LATENCY_BUCKETS, tag_keys=("tier",))
        self.tpot = metrics.Histogram(
            "tierserve_tpot_seconds", "Time per output token after the first, seen at the ingress.",
            boundaries=TOKEN_LATENCY_BUCKETS, tag_keys=("tier",))
        self.e2e = metrics.Histogram(
            "tierserve_request_latency_seconds", "End-to-end request latency seen at the ingress.",
            boundaries=LATENCY_BUCKETS, tag_keys=("tier", "endpoint"))
        self.prompt_tokens = metrics.Counter(
            "tierserve_prompt_tokens_total", "Prompt tokens served, by tier.", tag_keys=("tier",))
        self.completion_tokens = metrics.Counter(
            "tierserve_completion_tokens_total", "Completion tokens generated, by tier.", tag_keys=("tier",))
        self.fallbacks = metrics.Counter(
            "tierserve_fallbacks_total", "Requests moved to another tier before the first token.",
            tag_keys=("from_tier", "to_tier", "cause"))
        self.migrations = metrics.Counter(
            "tierserve_migrations_total",
            "Streams continued on another replica or tier after a failure mid-stream.",
            tag_keys=("from_tier", "to_tier"))
        self.retries = metrics.Counter(
            "tierserve_retries_total", "Extra attempts made for a request.", tag_keys=("tier",))
        self.in_flight = metrics.Gauge(
            "tierserve_in_flight_requests", "Requests being served by this ingress replica.")
        # Per team (bounded: teams are created by the platform team), never per key.
        self.team_tokens = metrics.Counter(
            "tierserve_team_tokens_total", "Tokens used by keyed requests, by team, tier and kind.",
            tag_keys=("team", "tier", "kind"))
        self.team_cost = metrics.Counter(
            "tierserve_team_cost_usd_total", "Cost of keyed requests at the tier's cost_per_1k_tokens.",
            tag_keys=("team", "tier"))
        self.team_savings = metrics.Counter(
            "tierserve_team_savings_usd_total",
            "What keyed requests would have cost more on the strongest tier (routing's savings).",
            tag_keys=("team",))
        self.key_rejections = metrics.Counter(
            "tierserve_key_rejections_total", "Keyed requests refused by their key's limits, by cause.",
            tag_keys=("team", "cause"))


class RouterMetrics:
    """Metrics recorded by the router for every decision."""

    def __init__(self) -> None:
        self.decisions = metrics.Counter(
            "tierserve_route_decisions_total", "Routing decisions, by chosen tier and reason kind.",
            tag_keys=("tier", "reason"))
        self.decision_latency = metrics.Histogram(
            "tierserve_route_decision_seconds", "Time the router spent on one decision.",
            boundaries=DECISION_BUCKETS)
        self.affinity_hits = metrics.Counter(
            "tierserve_affinity_hits_total", "Decisions that followed a session's earlier tier.",
            tag_keys=("tier",))
        self.threshold = metrics.Gauge(
            "tierserve_route_threshold",
            "The picker's threshold at each ladder boundary (0 = the lowest); the cost-budget "
            "picker moves it to hold its spend target.", tag_keys=("boundary",))


# Seconds to get a tier's model onto the node: a cache hit (ms) to a large download (tens of min).
MODEL_FETCH_BUCKETS = [0.01, 0.1, 0.5, 1, 5, 15, 30, 60, 120, 300, 600, 1800, 3600]


class ModelMetrics:
    """Recorded by a tier replica while it fetches its model, before its engine starts."""

    def __init__(self) -> None:
        self.fetch_seconds = metrics.Histogram(
            "tierserve_model_fetch_seconds",
            "Time a replica spent getting its model onto the node, by tier, source kind and outcome.",
            boundaries=MODEL_FETCH_BUCKETS, tag_keys=("tier", "source", "outcome"))
        self.fetched_bytes = metrics.Counter(
            "tierserve_model_fetched_bytes_total",
            "Model bytes downloaded by replicas, by tier and source kind.",
            tag_keys=("tier", "source"))
        self.progress = metrics.Gauge(
            "tierserve_model_download_progress_ratio",
            "Fraction of the model on the node (0-1) during a download.",
            tag_keys=("tier",))
