"""The metric names a rule or dashboard may use, from their sources of truth.

- Tierserve: the Counter/Gauge/Histogram names in deployments/metrics.py (read with
  `ast`, not imported, so no ray import), as Ray exports them.
- Ray 2.60: shared/reference/ray-2.60.0/metric-names-live-serve-app.txt.
- vLLM through Ray Serve LLM: names/vllm-metric-names.txt (checked against vLLM's
  v1/metrics/loggers.py by a test where vLLM is installed).
- DCGM exporter: names/dcgm-metric-names.txt.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

from tooling.observability import paths

_KINDS = {"Counter": "counter", "Gauge": "gauge", "Histogram": "histogram"}


def exported(name: str, kind: str, prefix: str = "ray_") -> list[str]:
    """Prometheus series names for one metric as Ray exports it.

    Ray prefixes `ray_`; counters get one `_total` (an existing one is not doubled);
    histograms get `_bucket`, `_count` and `_sum`.
    """
    base = prefix + re.sub(r"[^a-zA-Z0-9_]", "_", name)
    if kind == "counter":
        return [base.removesuffix("_total") + "_total"]
    if kind == "histogram":
        return [base + s for s in ("_bucket", "_count", "_sum")]
    return [base]


def declared_metrics(source: str) -> list[tuple[str, str]]:
    """(name, kind) for each `metrics.Counter("name", ...)`-style call in a module's source."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if not isinstance(node, ast.Call) or not node.args:
            continue
        func = node.func
        attr = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", None)
        first = node.args[0]
        if attr in _KINDS and isinstance(first, ast.Constant) and isinstance(first.value, str):
            found.append((first.value, _KINDS[attr]))
    return found


def tierserve_names(module: Path = paths.TIERSERVE_METRICS_MODULE) -> set[str]:
    return {n for name, kind in declared_metrics(module.read_text()) for n in exported(name, kind)}


def read_list(path: Path) -> set[str]:
    """One name a line; blank lines and `#` comments ignored."""
    lines = (line.split("#", 1)[0].strip() for line in path.read_text().splitlines())
    return {line for line in lines if line}


_VLLM_DECL = re.compile(r'_(gauge|counter|histogram)_cls\(\s*name="(vllm:[A-Za-z0-9_:]+)"')


def vllm_names_from_source(loggers_source: str) -> set[str]:
    """Every ray_vllm_* series name declared in vLLM's v1/metrics/loggers.py."""
    return {n for kind, name in _VLLM_DECL.findall(loggers_source) for n in exported(name, kind)}


def allowed_names() -> dict[str, set[str]]:
    return {
        "tierserve": tierserve_names(),
        "ray": read_list(paths.RAY_NAMES_FILE),
        "vllm": read_list(paths.VLLM_NAMES_FILE),
        "dcgm": read_list(paths.DCGM_NAMES_FILE),
    }
