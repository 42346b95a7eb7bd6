"""A local Prometheus (Debian's `prometheus` binary) scraping the local Ray cluster.

It loads the same rule file as the chart's PrometheusRule, listens on loopback
only and keeps its TSDB in a temporary directory that is removed on stop.

    python -m tooling.observability.local_prometheus            # discover Ray's ports, run until Ctrl-C
    python -m tooling.observability.local_prometheus --metrics-port 8080 --port 9090

Ray writes a Prometheus file-SD document, prom_metrics_service_discovery.json,
into its session directory listing every node's metrics export port (plus the
autoscaler's and dashboard's). We read the ports from it and scrape them on
127.0.0.1, so nothing listens or is scraped beyond loopback.
"""

from __future__ import annotations

import argparse
import json
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from pathlib import Path
from types import TracebackType
from typing import Any

import yaml

from tooling.local_cluster import LocalStack, free_port
from tooling.observability.paths import RULES_FILE

DISCOVERY_FILE = "prom_metrics_service_discovery.json"


def discover_metrics_ports(ray_temp_dir: Path = Path("/tmp/ray")) -> list[int]:
    """Metrics ports of the local Ray cluster's nodes, from Ray's file-SD document."""
    for path in (ray_temp_dir / "session_latest" / DISCOVERY_FILE, ray_temp_dir / DISCOVERY_FILE):
        if path.exists():
            groups = json.loads(path.read_text())
            targets = [t for g in groups for t in g.get("targets", [])]
            return sorted({int(t.rsplit(":", 1)[1]) for t in targets if ":" in t})
    return []


def ports_from_ray(address: str) -> list[int]:
    """Fallback when no discovery file is readable: ask the cluster (connects as a driver)."""
    import ray  # only here: the rest of tooling.observability stays free of ray

    ray.init(address=address, logging_level="ERROR", log_to_driver=False)
    try:
        return sorted({int(n["MetricsExportPort"]) for n in ray.nodes() if n.get("Alive")})
    finally:
        ray.shutdown()



def prometheus_config(metrics_ports: list[int], rules_file: Path, interval: str) -> dict[str, object]:
    return {
        "global": {"scrape_interval": interval, "evaluation_interval": interval},
        "rule_files": [str(rules_file.resolve())],
        "scrape_configs": [{
            "job_name": "ray",
            "static_configs": [{"targets": [f"127.0.0.1:{p}" for p in metrics_ports]}],
        }],
    }


class LocalPrometheus:
    """Starts one Prometheus process and stops exactly that process."""

    def __init__(self, metrics_ports: list[int], *, port: int | None = None, rules_file: Path = RULES_FILE,
                 interval: str = "5s", binary: str = "prometheus") -> None:
        if not metrics_ports:
            raise ValueError("no Ray metrics ports to scrape: is a Ray cluster running?")
        found = shutil.which(binary)
        if found is None:
            raise FileNotFoundError(f"{binary!r} not found: apt-get install -y prometheus")
        self.binary = found
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.metrics_ports = metrics_ports
        self.rules_file = rules_file
        self.interval = interval
        self.workdir: Path | None = None
        self.process: subprocess.Popen[bytes] | None = None

    def start(self, ready_timeout_s: float = 30.0) -> LocalPrometheus:
        self.workdir = Path(tempfile.mkdtemp(prefix="tierserve-prometheus-"))
        config = self.workdir / "prometheus.yml"
        scrape = prometheus_config(self.metrics_ports, self.rules_file, self.interval)
        config.write_text(yaml.safe_dump(scrape))
        log = (self.workdir / "prometheus.log").open("wb")
        self.process = subprocess.Popen(
            [self.binary, f"--config.file={config}", f"--storage.tsdb.path={self.workdir / 'data'}",
             f"--web.listen-address=127.0.0.1:{self.port}", "--storage.tsdb.retention.time=1d"],
            stdout=log, stderr=subprocess.STDOUT)
        log.close()
        self._wait_ready(ready_timeout_s)
        return self

    def _wait_ready(self, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            assert self.process is not None
            if self.process.poll() is not None:
                raise RuntimeError(f"prometheus exited with {self.process.returncode}:\n{self.log_tail()}")
            try:
                with urllib.request.urlopen(f"{self.url}/-/ready", timeout=2) as resp:
                    if resp.status == 200:
                        return
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                pass
            time.sleep(0.3)
        raise TimeoutError(f"prometheus not ready after {timeout_s}s:\n{self.log_tail()}")

    def _get(self, path: str) -> Any:
        with urllib.request.urlopen(f"{self.url}{path}", timeout=5) as resp:
            body = json.load(resp)
        if body.get("status") != "success":
            raise RuntimeError(f"prometheus {path}: {body}")
        return body["data"]

    def query(self, expr: str) -> list[dict[str, Any]]:
        """Instant query through the HTTP API: the result vector."""
        return list(self._get("/api/v1/query?" + urllib.parse.urlencode({"query": expr}))["result"])

    def wait_for(self, expr: str, ok: Callable[[list[dict[str, Any]]], bool], timeout_s: float = 60.0,
                 poll_s: float = 1.0) -> list[dict[str, Any]]:
        """Poll `expr` until `ok(result)`; TimeoutError with the last result otherwise."""
        deadline, result = time.monotonic() + timeout_s, []
        while time.monotonic() < deadline:
            result = self.query(expr)
            if ok(result):
                return result
            time.sleep(poll_s)
        raise TimeoutError(f"{expr} did not pass its check within {timeout_s}s; last result: {result}")

    def rule_errors(self) -> list[tuple[str, str]]:
        """(rule, last error) for every loaded rule whose last evaluation failed."""
        groups = self._get("/api/v1/rules")["groups"]
        rules = [r for g in groups for r in g["rules"]]
        return [(r["name"], r.get("lastError", "")) for r in rules if r["health"] == "err"]

    def rule_groups(self) -> list[str]:
        return [g["name"] for g in self._get("/api/v1/rules")["groups"]]

    def log_tail(self, chars: int = 4000) -> str:
        log = self.workdir / "prometheus.log" if self.workdir else None
        return log.read_text(errors="replace")[-chars:] if log and log.exists() else ""

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=5)
        self.process = None
        if self.workdir is not None:
            shutil.rmtree(self.workdir, ignore_errors=True)
            self.workdir = None

    def __enter__(self) -> LocalPrometheus:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Run Prometheus on loopback against the local Ray cluster.")
    parser.add_argument("--port", type=int, default=9090,
                        help="Prometheus listen port on 127.0.0.1 (0 = free)")
    parser.add_argument("--metrics-port", type=int, action="append", default=[],
                        help="a Ray metrics export port (repeatable); default: discovered")
    parser.add_argument("--ray-temp-dir", type=Path, default=Path(LocalStack().temp_dir))
    parser.add_argument("--ray-address", default=None,
                        help="ask this cluster for ports if discovery finds none")
    parser.add_argument("--ray-dashboard", default="http://127.0.0.1:8265")
    parser.add_argument("--interval", default="5s")
    args = parser.parse_args(argv)

    ports = args.metrics_port or discover_metrics_ports(args.ray_temp_dir)
    if not ports and args.ray_address:
        ports = ports_from_ray(args.ray_address)
    if not ports:
        print(f"No Ray metrics ports found under {args.ray_temp_dir}: start the Tierserve stack first, "
              "or pass --ray-temp-dir (Ray's --temp-dir), --ray-address or --metrics-port.", file=sys.stderr)
        return 2
    prom = LocalPrometheus(ports, port=args.port or None, interval=args.interval)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    try:
        prom.start()
        print(f"Ray dashboard:  {args.ray_dashboard}")
        print(f"Prometheus:     {prom.url}  (scraping 127.0.0.1:{', 127.0.0.1:'.join(map(str, ports))})")
        print(f"Alerts:         {prom.url}/alerts    Rules: {prom.url}/rules")
        print(f"Tip: start Ray with RAY_PROMETHEUS_HOST={prom.url} so the Ray dashboard's graphs use it.")
        print("Ctrl-C stops Prometheus and deletes its data.", flush=True)
        while prom.process is not None and prom.process.poll() is None:
            time.sleep(1)
        print(prom.log_tail(), file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 0
    finally:
        prom.stop()


if __name__ == "__main__":
    sys.exit(main())
