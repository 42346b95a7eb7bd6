"""The local Prometheus launcher: discovery, config, and a real Prometheus against a fake Ray exporter."""

from __future__ import annotations

import json
import shutil
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from prometheus_client import CollectorRegistry, Counter, Histogram, start_http_server

from tooling.observability.local_prometheus import (
    LocalPrometheus,
    discover_metrics_ports,
    free_port,
    prometheus_config,
)
from tooling.observability.paths import RULES_FILE
from tooling.observability.snapshot import render_snapshot

needs_prometheus = pytest.mark.skipif(shutil.which("prometheus") is None,
                                      reason="prometheus not installed (apt-get install -y prometheus)")


def test_discovers_ports_from_rays_file_sd(tmp_path: Path) -> None:
    session = tmp_path / "session_latest"
    session.mkdir()
    (session / "prom_metrics_service_discovery.json").write_text(json.dumps(
        [{"labels": {"job": "ray"}, "targets": ["10.0.0.5:58123", "10.0.0.5:44217", "10.0.0.6:58123"]}]))
    assert discover_metrics_ports(tmp_path) == [44217, 58123]
    assert discover_metrics_ports(tmp_path / "nothing") == []


def test_config_scrapes_loopback_with_the_chart_rules() -> None:
    cfg = prometheus_config([8080, 8081], RULES_FILE, "5s")
    assert cfg["rule_files"] == [str(RULES_FILE.resolve())]
    (scrape,) = cfg["scrape_configs"]  # type: ignore[misc]
    assert scrape["static_configs"] == [{"targets": ["127.0.0.1:8080", "127.0.0.1:8081"]}]
    yaml.safe_dump(cfg)


def test_refuses_to_start_without_ports() -> None:
    with pytest.raises(ValueError, match="no Ray metrics ports"):
        LocalPrometheus([])


@pytest.fixture
def fake_ray_exporter() -> Iterator[int]:
    """Serves Tierserve-shaped series (as Ray would export them) on a loopback port, with live traffic."""
    registry = CollectorRegistry()
    requests = Counter("ray_tierserve_requests", "r", ["tier", "endpoint", "status", "reason"],
                       registry=registry)
    ttft = Histogram("ray_tierserve_ttft_seconds", "t", ["tier"], buckets=[0.1, 1, 5], registry=registry)
    stop = threading.Event()

    def traffic() -> None:
        while not stop.wait(0.2):
            requests.labels("fast", "chat", "200", "rule").inc(5)
            requests.labels("reasoning", "chat", "200", "rule").inc(1)
            ttft.labels("fast").observe(0.05)

    port = free_port()
    server, thread = start_http_server(port, addr="127.0.0.1", registry=registry)
    ticker = threading.Thread(target=traffic, daemon=True)
    ticker.start()
    yield port
    stop.set()
    ticker.join(timeout=5)
    server.shutdown()
    thread.join(timeout=5)


@needs_prometheus
def test_real_prometheus_scrapes_and_evaluates_rules(fake_ray_exporter: int, tmp_path: Path) -> None:
    with LocalPrometheus([fake_ray_exporter], interval="1s") as prom:
        assert prom.url.startswith("http://127.0.0.1:")
        prom.wait_for("tierserve_tier:requests:rate5m > 0",
                 lambda r: {s["metric"].get("tier") for s in r} >= {"fast", "reasoning"})
        prom.wait_for("tierserve_tier:ttft_seconds:p95_5m", lambda r: len(r) == 1)
        assert sorted(prom.rule_groups()) == ["tierserve.alerts", "tierserve.recording"]
        assert not prom.rule_errors()
        png = render_snapshot(prom.url, tmp_path / "snapshot.png", minutes=1, step_s=1)
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        process = prom.process
    assert process is not None and process.poll() is not None, "Prometheus still running after stop()"
