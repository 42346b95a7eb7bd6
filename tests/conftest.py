"""Shared fixtures. The e2e stack (real Ray, real vLLM on the CPU, the tiny models) is
started once per test session on its own ports and temp dir, and only it is stopped."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from app.engine_shm import mapped_shm_segments, shm_segments
from tooling.local_cluster import LocalStack, engine_env, free_port, stack_processes

# Before anything imports ray: it reads RAY_AUTH_MODE and friends once, at import.
os.environ.update(engine_env())

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"


@dataclass
class Stack:
    base_url: str
    ray_address: str
    dashboard_url: str
    metrics_ports: list[int]
    deploy_output: str
    log_dir: Path
    app_name: str = "tierserve"
    otlp: Any = None  # the OTLP receiver every replica exports its spans to (tests/otlp_receiver.py)

    def handle(self, deployment: str):
        from ray import serve

        return serve.get_deployment_handle(deployment, app_name=self.app_name)


def _wait_ready(base_url: str, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    last = ""
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"{base_url}/readyz", timeout=5) as resp:
                if resp.status == 200:
                    return
        except Exception as exc:  # not up yet
            last = repr(exc)
        time.sleep(2)
    raise TimeoutError(f"stack not ready in {timeout_s}s: {last}")


@pytest.fixture(scope="session")
def tierserve_stack():
    """A real Ray cluster with Tierserve deployed through the `serve deploy` CLI."""
    import ray
    from ray import serve

    from app.config import load_config
    from app.serve_config import render_serve_config

    for model in ("tiny-fast", "tiny-reasoning"):
        if not (REPO / "models" / model / "model.safetensors").exists():
            pytest.fail("tiny models missing: run `make setup` (tierserve models make-tiny)")
    temp_dir = tempfile.mkdtemp(prefix="tsr-", dir="/tmp")  # short: Ray's unix sockets
    shm_before = shm_segments()
    dash_port, metrics_port, http_port = free_port(), free_port(), free_port()
    node_id = None
    config = load_config("local-cpu")
    # The stack's own keys database (empty: the API stays open, as the e2e tests expect), never
    # the developer's .tierserve/keys.db; reaches the replicas through the raylet's env.
    os.environ[config.server.keys.db_url_env] = f"sqlite:///{temp_dir}/keys.db"
    # Serve's data-path switches reach every process of the cluster through the raylet's env;
    # HAProxy gets free ports so a `make up` stack on the same machine is left alone.
    haproxy_dir = Path(temp_dir) / "haproxy"  # its own: a private stack may run beside it
    haproxy_dir.mkdir()
    os.environ.update(config.server.ray_serve.env(free_port(), free_port(), str(haproxy_dir)))
    # Tracing on, to a real OTLP receiver on loopback: every e2e request is traced (and the
    # tracing tests read the spans); the env var reaches every replica like the DB URL.
    from tests.otlp_receiver import OtlpReceiver

    otlp = OtlpReceiver()
    os.environ[config.server.tracing.endpoint_env] = otlp.url
    try:
        ray.init(address="local", num_cpus=8, include_dashboard=True, dashboard_host="127.0.0.1",
                 dashboard_port=dash_port, _temp_dir=temp_dir, _metrics_export_port=metrics_port,
                 log_to_driver=False)
        node_id = ray.get_runtime_context().get_node_id()
        dashboard_url = f"http://127.0.0.1:{dash_port}"
        cfg_path = Path(temp_dir) / "serve_config.yaml"
        cfg_path.write_text(yaml.safe_dump(
            render_serve_config(config, http_port=http_port), sort_keys=False))
        deploy = subprocess.run(
            [str(Path(sys.executable).with_name("serve")), "deploy", str(cfg_path),
             "--address", dashboard_url],
            env=engine_env(), capture_output=True, text=True, timeout=300)
        assert deploy.returncode == 0, deploy.stderr[-3000:]
        base_url = f"http://127.0.0.1:{http_port}"
        _wait_ready(base_url, timeout_s=900)
        yield Stack(base_url=base_url, ray_address=ray.get_runtime_context().gcs_address,
                    dashboard_url=dashboard_url, metrics_ports=[metrics_port],
                    deploy_output=deploy.stdout + deploy.stderr,
                    log_dir=Path(temp_dir) / "session_latest" / "logs" / "serve", otlp=otlp)
    finally:
        # Everything this cluster started (vLLM engines included), to reap any straggler.
        ours = stack_processes(LocalStack(temp_dir=temp_dir))
        try:
            if ray.is_initialized():
                serve.shutdown()
        finally:
            ray.shutdown()
            for proc in ours:
                with contextlib.suppress(Exception):
                    proc.kill()
            if keep := os.environ.get("TIERSERVE_TEST_KEEP_LOGS"):  # debugging: keep replica logs
                shutil.copytree(Path(temp_dir) / "session_latest" / "logs", keep, dirs_exist_ok=True)
            shutil.rmtree(temp_dir, ignore_errors=True)
            otlp.close()
            os.environ.pop(config.server.tracing.endpoint_env, None)
            if node_id:  # HAProxy's config and sockets, kept per Ray node id
                shutil.rmtree(Path("/tmp/haproxy-serve") / node_id, ignore_errors=True)
            # Ours: they appeared during the session and no live process maps them.
            for segment in shm_segments() - shm_before - mapped_shm_segments():
                segment.unlink(missing_ok=True)


@pytest.fixture(scope="session")
def faults(tierserve_stack):
    """Base URL of the fault app (tests/fault_app.py) on the session cluster: the real
    ingress and router in front of fake tiers that fail on request."""
    from ray import serve

    from app.config import load_config
    from tests.fault_app import APP_NAME, ROUTE_PREFIX, SilentRedis, deploy_fault_app, fault_config

    redis = SilentRedis()
    deploy_fault_app(fault_config(load_config("local-cpu"), f"redis://127.0.0.1:{redis.port}/0"))
    try:
        yield f"{tierserve_stack.base_url}{ROUTE_PREFIX}"
    finally:
        serve.delete(APP_NAME)
        redis.close()


@pytest.fixture(scope="session")
def openai_client(tierserve_stack):
    from openai import OpenAI

    return OpenAI(base_url=f"{tierserve_stack.base_url}/v1", api_key="unused", max_retries=0,
                  timeout=120)


@pytest.fixture(scope="session")
def tiny_tokenizers():
    from transformers import AutoTokenizer

    return {name: AutoTokenizer.from_pretrained(REPO / "models" / f"tiny-{name}")
            for name in ("fast", "reasoning")}


def chat_prompt_tokens(tokenizer, messages: list[dict]) -> int:
    """Prompt tokens for a chat request, as vLLM counts them (chat template, no extra BOS)."""
    text = tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    return len(tokenizer.encode(text, add_special_tokens=False))


def sse_events(raw: bytes) -> list[dict | str]:
    """Parse an SSE body into JSON events (and the final '[DONE]')."""
    events: list[dict | str] = []
    for block in raw.decode().split("\n\n"):
        block = block.strip()
        if not block:
            continue
        assert block.startswith("data: "), block
        data = block[len("data: "):]
        events.append(data if data == "[DONE]" else json.loads(data))
    return events
