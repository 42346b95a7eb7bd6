"""The SLO file (kuberay/chart/files/monitoring/slo.yaml), loaded and checked once."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from tooling.observability.paths import SLO_FILE

_DURATION = re.compile(r"^[0-9]+(ms|s|m|h|d|w|y)$")
_TIER = re.compile(r"^[a-z][a-z0-9-]{0,30}$")


@dataclass(frozen=True)
class TierSLO:
    name: str
    ttft_p95_seconds: float
    max_queue_depth: float
    min_traffic_share: float


@dataclass(frozen=True)
class SLO:
    application: str
    tiers: tuple[TierSLO, ...]
    min_request_rate: float
    # Per-alert settings, e.g. thresholds["error_ratio"]["max"]; durations stay strings.
    thresholds: dict[str, dict[str, Any]]

    def get(self, section: str, key: str) -> Any:
        return self.thresholds[section][key]

    def tier_names(self) -> list[str]:
        return [t.name for t in self.tiers]

    def deployment_regex(self) -> str:
        """RE2 matching a Serve deployment name that contains a tier name; group 1 = tier."""
        return ".*(" + "|".join(re.escape(n) for n in self.tier_names()) + ").*"


_SECTIONS = {
    "ttft": {"for"},
    "error_ratio": {"max", "for"},
    "queue": {"for"},
    "kv_cache": {"max_usage", "for"},
    "unhealthy_replica": {"for"},
    "tier_down": {"for"},
    "no_traffic": {"window", "for"},
    "fallback_storm": {"max_ratio", "min_rate", "for"},
    "overload": {"max_ratio", "cause", "for"},
}


def _check_section(name: str, body: Any) -> dict[str, Any]:
    if not isinstance(body, dict) or set(body) != _SECTIONS[name]:
        raise ValueError(f"slo.{name} must have exactly the keys {sorted(_SECTIONS[name])}, got {body!r}")
    for key in ("for", "window"):
        if key in body and not _DURATION.match(str(body[key])):
            raise ValueError(f"slo.{name}.{key} is not a Prometheus duration: {body[key]!r}")
    return dict(body)


def parse_slo(doc: dict[str, Any]) -> SLO:
    expected = {"application", "tiers", "min_request_rate", *_SECTIONS}
    if set(doc) != expected:
        missing, unknown = sorted(expected - set(doc)), sorted(set(doc) - expected)
        raise ValueError(f"slo keys differ: missing {missing}, unknown {unknown}")
    tiers = []
    for name, body in doc["tiers"].items():
        if not _TIER.match(name):
            raise ValueError(f"bad tier name {name!r}")
        tiers.append(TierSLO(name=name, ttft_p95_seconds=float(body["ttft_p95_seconds"]),
                             max_queue_depth=float(body["max_queue_depth"]),
                             min_traffic_share=float(body["min_traffic_share"])))
    if not tiers:
        raise ValueError("slo.tiers is empty")
    return SLO(application=str(doc["application"]), tiers=tuple(tiers),
               min_request_rate=float(doc["min_request_rate"]),
               thresholds={name: _check_section(name, doc[name]) for name in _SECTIONS})


def load_slo(path: Path = SLO_FILE) -> SLO:
    return parse_slo(yaml.safe_load(path.read_text()))
