"""Render a PNG of real Tierserve data from a Prometheus server, for the README.

    python -m tooling.observability.snapshot --prometheus http://127.0.0.1:9090 --out docs/observability.png

Reads the recording rules (same as the Grafana overview), so it shows what
operators see; matplotlib is a dev dependency.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import urllib.parse
import urllib.request
from pathlib import Path

PANELS: list[tuple[str, str, str]] = [  # (title, PromQL, y label)
    ("Requests/s by tier", "tierserve_tier:requests:rate5m", "req/s"),
    ("TTFT p95 by tier (ingress)", "tierserve_tier:ttft_seconds:p95_5m", "seconds"),
    ("Completion tokens/s by tier", "tierserve_tier:completion_tokens:rate5m", "tokens/s"),
    ("End-to-end latency p95 by tier", "tierserve_tier:request_latency_seconds:p95_5m", "seconds"),
]


def query_range(base_url: str, expr: str, minutes: int, step_s: int) -> list[dict[str, object]]:
    end = time.time()
    params = {"query": expr, "start": end - minutes * 60, "end": end, "step": step_s}
    url = f"{base_url}/api/v1/query_range?{urllib.parse.urlencode(params)}"
    with urllib.request.urlopen(url, timeout=10) as r:
        return list(json.load(r)["data"]["result"])


def render_snapshot(base_url: str, out: Path, minutes: int = 15, step_s: int = 5) -> Path:
    import matplotlib

    matplotlib.use("Agg")  # headless
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(2, 2, figsize=(12, 7), constrained_layout=True)
    for ax, (title, expr, unit) in zip(axes.flat, PANELS, strict=True):
        for series in query_range(base_url, expr, minutes, step_s):
            values = series["values"]  # type: ignore[index]
            t0 = float(values[0][0])  # type: ignore[index]
            ax.plot([float(t) - t0 for t, _ in values], [float(v) for _, v in values],  # type: ignore[union-attr]
                    label=series["metric"].get("tier", "?"))  # type: ignore[index, union-attr]
        ax.set_title(title)
        ax.set_xlabel("seconds")
        ax.set_ylabel(unit)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(loc="upper left")
    fig.suptitle("Tierserve: recording rules from a live Prometheus scraping Ray")
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=100)
    plt.close(fig)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--prometheus", default="http://127.0.0.1:9090")
    parser.add_argument("--out", type=Path, default=Path("results/observability.png"))
    parser.add_argument("--minutes", type=int, default=15)
    args = parser.parse_args(argv)
    print(render_snapshot(args.prometheus, args.out, args.minutes))
    return 0


if __name__ == "__main__":
    sys.exit(main())
