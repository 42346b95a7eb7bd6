"""vLLM's own gauges per tier (requests running and waiting, KV-cache use), read from each
Ray node's metrics export (the Prometheus text the stack's Prometheus scrapes), only when
the console asks. Lines are filtered by name before parsing: the export is large."""

from __future__ import annotations

import re
import urllib.request
from collections.abc import Iterable

from pydantic import BaseModel

GAUGES = {"ray_vllm_num_requests_running": "running", "ray_vllm_num_requests_waiting": "waiting",
          "ray_vllm_kv_cache_usage_perc": "kv_cache_usage"}
_LINE = re.compile(r'^(?P<name>[a-zA-Z_:]+)\{(?P<labels>[^}]*)\}\s+(?P<value>\S+)')
_MODEL = re.compile(r'model_name="([^"]*)"')


class EngineStats(BaseModel):
    running: float = 0.0  # summed over the tier's engines
    waiting: float = 0.0
    kv_cache_usage: float = 0.0  # the fullest engine, 0-1
    engines: int = 0


def parse(texts: Iterable[str]) -> dict[str, EngineStats]:
    """Per served model name, from Prometheus exposition texts."""
    out: dict[str, EngineStats] = {}
    for text in texts:
        for line in text.splitlines():
            if not line.startswith("ray_vllm_"):
                continue
            m = _LINE.match(line)
            if m is None or m["name"] not in GAUGES:
                continue
            model = _MODEL.search(m["labels"])
            if model is None:
                continue
            stats = out.setdefault(model.group(1), EngineStats())
            value = float(m["value"])
            field = GAUGES[m["name"]]
            if field == "kv_cache_usage":
                stats.kv_cache_usage = max(stats.kv_cache_usage, value)
                stats.engines += 1
            else:
                setattr(stats, field, getattr(stats, field) + value)
    return out


def metrics_urls() -> list[str]:
    """Each alive Ray node's metrics export endpoint."""
    import ray

    return [f"http://{n['NodeManagerAddress']}:{n['MetricsExportPort']}/metrics"
            for n in ray.nodes() if n.get("Alive") and n.get("MetricsExportPort")]


def read(timeout_s: float = 2.0) -> dict[str, EngineStats]:
    texts = []
    for url in metrics_urls():
        try:
            with urllib.request.urlopen(url, timeout=timeout_s) as resp:  # noqa: S310 (cluster-internal)
                texts.append(resp.read().decode("utf-8", "replace"))
        except OSError:
            continue  # a node going away: show the others
    return parse(texts)
