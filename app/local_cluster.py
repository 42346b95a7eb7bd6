"""Start and stop the local single-machine stack: a Ray head, then `serve deploy`.

Ports and the temp dir are Tierserve's own, so another Ray on the machine is left alone.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from app.config.loader import REPO_ROOT
from app.config.schema import RayServeRuntime


@dataclass(frozen=True)
class LocalStack:
    gcs_port: int = 6390
    dashboard_port: int = 8265
    metrics_port: int = 8090
    serve_port: int = 8000
    # HAProxy's own ports when Serve runs it (configs/server.yaml ray_serve.haproxy).
    haproxy_metrics_port: int = 9101
    haproxy_stats_port: int = 8404
    # Logical CPUs Ray may hand out: each vLLM tier takes a CPU bundle for its
    # replica and one for its engine, on a 2-core machine too.
    num_cpus: int = 8
    temp_dir: str = "/tmp/tierserve-ray"

    @property
    def dashboard_url(self) -> str:
        return f"http://127.0.0.1:{self.dashboard_port}"

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.serve_port}"


def free_port() -> int:
    """A free TCP port on loopback (for tests and benchmarks that start their own servers)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def engine_env() -> dict[str, str]:
    """Environment for Ray and the vLLM processes it starts: offline, caches in our dirs."""
    cache = REPO_ROOT / ".tierserve" / "cache"
    cache.mkdir(parents=True, exist_ok=True)
    return {
        **os.environ,
        "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "VLLM_NO_USAGE_STATS": "1",
        "DO_NOT_TRACK": "1", "VLLM_CACHE_ROOT": str(cache / "vllm"),
        "TORCHINDUCTOR_CACHE_DIR": str(cache / "inductor"),
        "RAY_USAGE_STATS_ENABLED": "0",
        # Ray 2.60 turns token auth on for new clusters; its clients send the token
        # (~/.ray/auth_token) only when told the mode.
        "RAY_AUTH_MODE": os.environ.get("RAY_AUTH_MODE", "token"),
        # The first chunk of a stream matters more than Serve's default coalescing.
        "RAY_SERVE_ENABLE_TASK_EVENTS": os.environ.get("RAY_SERVE_ENABLE_TASK_EVENTS", "0"),
    }


def ray_node_env(stack: LocalStack, runtime: RayServeRuntime) -> dict[str, str]:
    """Env for a Ray node of `stack`: offline engines plus Serve's data-path switches."""
    return {**engine_env(), **runtime.env(stack.haproxy_metrics_port, stack.haproxy_stats_port)}


def _bin(name: str) -> str:
    return str(Path(sys.executable).with_name(name))


def start_ray(stack: LocalStack, runtime: RayServeRuntime) -> None:
    subprocess.run(
        [_bin("ray"), "start", "--head", f"--port={stack.gcs_port}",
         f"--num-cpus={stack.num_cpus}", "--dashboard-host=127.0.0.1",
         f"--dashboard-port={stack.dashboard_port}", f"--metrics-export-port={stack.metrics_port}",
         f"--temp-dir={stack.temp_dir}", "--disable-usage-stats"],
        check=True, env=ray_node_env(stack, runtime), cwd=REPO_ROOT)


def serve_deploy(stack: LocalStack, config_file: Path) -> None:
    subprocess.run([_bin("serve"), "deploy", str(config_file), "--address", stack.dashboard_url],
                   check=True, env=engine_env(), cwd=REPO_ROOT)


def wait_ready(base_url: str, timeout_s: float = 600) -> dict:
    """Poll /readyz until every tier has answered its warm-up."""
    deadline = time.monotonic() + timeout_s
    last = "no answer yet"
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"{base_url}/readyz", timeout=5) as resp:
                return json.load(resp)
        except urllib.error.HTTPError as exc:
            last = exc.read().decode(errors="replace")
        except (urllib.error.URLError, OSError) as exc:
            last = str(exc)
        time.sleep(2)
    raise TimeoutError(f"Tierserve not ready after {timeout_s:.0f}s; last answer: {last}")


def stop(stack: LocalStack) -> list[Path]:
    """Shut Serve and Ray down, then remove the shared-memory segments the stack's vLLM
    engines mapped and left behind (only those, and only once nothing maps them)."""
    ours = mapped_shm_segments([p.pid for p in stack_processes(stack)])
    subprocess.run([_bin("serve"), "shutdown", "-y", "--address", stack.dashboard_url],
                   env=engine_env(), check=False)
    subprocess.run([_bin("ray"), "stop"], env=engine_env(), check=False)
    return remove_orphaned_segments(ours)


def remove_orphaned_segments(ours: set[Path]) -> list[Path]:
    """Delete those of `ours` (segments our processes mapped) that nothing maps any more."""
    left = sorted(s for s in ours - mapped_shm_segments() if s.exists())
    for segment in left:
        segment.unlink(missing_ok=True)
    return left


def shm_segments() -> set[Path]:
    """vLLM's shared-memory segments; engines leave them behind after shutdown under Ray."""
    return set(Path("/dev/shm").glob("psm_*")) | set(Path("/dev/shm").glob("sem.mp-*"))


def mapped_shm_segments(pids: list[int] | None = None) -> set[Path]:
    """Segments that live processes (all, or `pids`) map; one mapped by anyone is never
    ours to delete."""
    files = [Path(f"/proc/{pid}/maps") for pid in pids] if pids is not None else \
        Path("/proc").glob("[0-9]*/maps")
    mapped: set[Path] = set()
    for maps in files:
        try:
            text = maps.read_text()
        except OSError:  # the process ended, or is not ours to read
            continue
        mapped |= {Path(line.split()[-1]) for line in text.splitlines() if "/dev/shm/" in line}
    return mapped


def stack_processes(stack: LocalStack) -> list:
    """Every process of the local stack: Ray's daemons (found by temp dir) and their descendants."""
    import psutil

    roots = []
    for proc in psutil.process_iter(["cmdline"]):
        cmd = " ".join(proc.info["cmdline"] or [])
        if stack.temp_dir in cmd:
            roots.append(proc)
    seen = {}
    for root in roots:
        for proc in [root, *root.children(recursive=True)]:
            seen[proc.pid] = proc
    return list(seen.values())


def stack_memory_mb(stack: LocalStack) -> dict[str, float]:
    """RSS (double-counts shared pages) and PSS (shares split) of the whole stack, in MB."""
    import psutil

    rss = pss = 0
    procs = stack_processes(stack)
    for proc in procs:
        try:
            info = proc.memory_full_info()
        except psutil.Error:
            continue
        rss += info.rss
        pss += getattr(info, "pss", info.rss)
    return {"processes": len(procs), "rss_mb": rss / 2**20, "pss_mb": pss / 2**20}
