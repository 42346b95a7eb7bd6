"""Find the PromQL in rule files and Grafana dashboards, and the metric names it reads.

The name extraction is lexical, not a full parser: promtool parses every
expression separately (tests wrap each one into a recording rule), so here we
only need the identifiers that are series selectors.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

_STRING = re.compile(r'"(?:\\.|[^"\\])*"|\'(?:\\.|[^\'\\])*\'|`[^`]*`')
_BRACES = re.compile(r"\{[^{}]*\}")
_BRACKETS = re.compile(r"\[[^\[\]]*\]")
_GROUPING = re.compile(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^()]*\)")
_OFFSET = re.compile(r"\boffset\s+-?[0-9a-z]+")
_IDENT = re.compile(r"(?<![\w.])([a-zA-Z_:][a-zA-Z0-9_:]*)(\s*\()?")
_KEYWORDS = {"by", "without", "on", "ignoring", "group_left", "group_right", "and", "or",
             "unless", "offset", "bool", "inf", "nan", "atan2", "start", "end"}
# Grafana's variables, replaced by something promtool accepts in the same place.
_GRAFANA_RANGES = re.compile(r"\$__(rate_interval|interval|range)|\$\{__(rate_interval|interval|range)\}")
_GRAFANA_VAR = re.compile(r"\$\{?[a-zA-Z_]\w*\}?")
_LABEL_VALUES = re.compile(r"^\s*label_values\((?:(.*),)?\s*([a-zA-Z_]\w*)\s*\)\s*$")


def metric_names(expr: str) -> set[str]:
    """Series names a PromQL expression selects (functions, keywords and labels excluded)."""
    text = _STRING.sub('""', expr)
    while _BRACES.search(text):
        text = _BRACES.sub(" ", text)
    text = _BRACKETS.sub(" ", _GROUPING.sub(" ", text))
    text = _OFFSET.sub(" ", text)
    return {m.group(1) for m in _IDENT.finditer(text)
            if m.group(2) is None and m.group(1) not in _KEYWORDS}


def grafana_to_promql(expr: str) -> str:
    """A dashboard query with Grafana variables replaced, ready for promtool."""
    return _GRAFANA_VAR.sub(".*", _GRAFANA_RANGES.sub("5m", expr))


def rule_exprs(rules_doc: dict[str, Any]) -> Iterator[tuple[str, str]]:
    """(where, expr) for every rule in a Prometheus rule file."""
    for group in rules_doc["groups"]:
        for rule in group["rules"]:
            yield f"{group['name']}/{rule.get('record') or rule.get('alert')}", rule["expr"]


def _panels(panels: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    for panel in panels:
        yield panel
        yield from _panels(panel.get("panels", []))


def dashboard_exprs(dashboard: dict[str, Any]) -> Iterator[tuple[str, str]]:
    """(where, PromQL) for every panel target and query variable, Grafana variables replaced."""
    for panel in _panels(dashboard.get("panels", [])):
        for i, target in enumerate(panel.get("targets", [])):
            if "expr" in target:
                yield f"{dashboard['title']}/{panel['title']}#{i}", grafana_to_promql(target["expr"])
    for var in dashboard.get("templating", {}).get("list", []):
        if var.get("type") != "query":
            continue
        query = var["query"]["query"] if isinstance(var["query"], dict) else var["query"]
        m = _LABEL_VALUES.match(query)
        if m:  # label_values(selector, label) is Grafana's, not PromQL: check the selector.
            if m.group(1):
                yield f"{dashboard['title']}/${var['name']}", grafana_to_promql(m.group(1))
        else:
            yield f"{dashboard['title']}/${var['name']}", grafana_to_promql(query)
