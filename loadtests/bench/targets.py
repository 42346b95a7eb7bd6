"""The three things the overhead benchmark measures, started side by side.

(a) bare vLLM's OpenAI server, (b) ray.serve.llm's `build_openai_app` with its
defaults, (c) the Tierserve graph. All serve the same tiny model with the same
engine settings as the `fast` tier of the chosen profile.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil

from app.config.loader import REPO_ROOT
from app.config.schema import RayServeRuntime, TierConfig, TierserveConfig
from app.serve_config import OFFLINE_ENV


@dataclass(frozen=True)
class Target:
    name: str
    chat_url: str


def wait_http(url: str, timeout_s: float, proc: subprocess.Popen | None = None,
              every_s: float = 0.2) -> float:
    """Poll `url` until it answers 200; returns the seconds waited (cold starts are timed by
    this, so the poll is short: at most `every_s` late)."""
    start = time.monotonic()
    while time.monotonic() - start < timeout_s:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"process exited with {proc.returncode} before {url} answered")
        try:
            with urllib.request.urlopen(url, timeout=5) as resp:
                if resp.status == 200:
                    return time.monotonic() - start
        except OSError:
            pass
        time.sleep(every_s)
    raise TimeoutError(f"{url} not ready in {timeout_s:.0f}s")


def pin_process(proc: psutil.Process, cores: list[int]) -> bool:
    """Pin one process and every thread it already started (they keep their own mask)."""
    try:
        proc.cpu_affinity(cores)
        for thread in proc.threads():
            os.sched_setaffinity(thread.id, cores)
    except (psutil.Error, OSError):
        return False
    return True


def pin_tree(pid: int, cores: list[int]) -> list[int]:
    """Pin every child of `pid` (vLLM's EngineCore and worker)."""
    return [p.pid for p in psutil.Process(pid).children(recursive=True) if pin_process(p, cores)]


def model_path(tier: TierConfig) -> str:
    path = Path(tier.model_source)
    return str(REPO_ROOT / path) if (REPO_ROOT / path).exists() else tier.model_source


def bare_vllm_command(tier: TierConfig, port: int) -> list[str]:
    kwargs = {**tier.engine_kwargs, "max_model_len": tier.max_model_len}
    cmd = [sys.executable, "-m", "vllm.entrypoints.openai.api_server",
           "--model", model_path(tier),
           "--served-model-name", tier.served_model_name,
           "--host", "127.0.0.1", "--port", str(port)]
    for key, value in kwargs.items():
        flag = "--" + key.replace("_", "-")
        if value is True:
            cmd.append(flag)
        elif value is not False:
            cmd += [flag, str(value)]
    return cmd


def start_bare(tier: TierConfig, port: int, env: dict[str, str], log: Path,
               timeout_s: float = 300) -> tuple[subprocess.Popen, float]:
    """Start the bare server; returns it and its seconds to ready (the cold start)."""
    start = time.monotonic()
    with log.open("w") as out:
        proc = subprocess.Popen(bare_vllm_command(tier, port), env={**env, **tier.env},
                                stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        wait_http(f"http://127.0.0.1:{port}/v1/models", timeout_s, proc)
    except BaseException:
        stop_tree(proc)
        raise
    if tier.resources.cpu_cores:  # the same pinning TierServer applies to its engine
        pin_tree(proc.pid, tier.resources.cpu_cores)
    return proc, time.monotonic() - start


def stop_tree(proc: subprocess.Popen, grace_s: float = 60) -> None:
    """SIGTERM a server started in its own session, then SIGKILL what is left of it."""
    if proc.poll() is None:
        os.killpg(proc.pid, 15)  # its own session: the engine's children go too
        try:
            proc.wait(grace_s)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, 9)
            proc.wait()


def start_rayllm(profile: str, tier: str, port: int, temp_dir: str, env: dict[str, str],
                 log: Path, timeout_s: float = 900) -> tuple[subprocess.Popen, float]:
    """Ray Serve LLM with defaults on its own Ray (loadtests/bench/rayllm_server.py).

    Returns the process and its deploy-to-ready seconds (Ray's own start excluded,
    as for Tierserve). Tierserve's data-path switches are removed from its env.
    """
    ready = Path(temp_dir) / "rayllm-ready.json"
    ready.unlink(missing_ok=True)
    switches = set(RayServeRuntime().env(0, 0))  # every key Tierserve may set
    clean = {k: v for k, v in env.items() if k not in switches}
    with log.open("w") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "loadtests.bench.rayllm_server", "--profile", profile,
             "--tier", tier, "--port", str(port), "--temp-dir", temp_dir,
             "--ready-file", str(ready)],
            env=clean, cwd=REPO_ROOT, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    deadline = time.monotonic() + timeout_s
    while not ready.exists():
        if proc.poll() is not None or time.monotonic() > deadline:
            stop_tree(proc)
            raise RuntimeError(f"Ray Serve LLM did not come up; see {log}")
        time.sleep(0.5)
    return proc, json.loads(ready.read_text())["deploy_s"]


def single_tier_config(config: TierserveConfig, tier_name: str) -> TierserveConfig:
    """The same profile with only `tier_name` deployed; routing points at it.

    The measured path (proxy -> ingress -> router -> tier) is unchanged; the
    other tier's engine would only add ~3 GB and an idle process.
    """
    data = config.model_dump()
    data["tiers"] = [t for t in data["tiers"] if t["name"] == tier_name]
    routing = data["routing"]
    for key in ("default_tier", "weak_tier", "strong_tier"):
        routing[key] = tier_name
    # A ladder of one tier: no score thresholds, no traffic shares to aim for.
    routing.update(ladder=[tier_name], thresholds=[], target_shares=None)
    for rule in routing["rules"]:
        rule["tier"] = tier_name
    return TierserveConfig.model_validate(data)


def rayllm_config(tier: TierConfig) -> Any:
    """ray.serve.llm defaults, except what CPU needs: the engine settings of the tier."""
    from ray.serve.llm import LLMConfig

    return LLMConfig(
        model_loading_config={"model_id": tier.served_model_name,
                              "model_source": model_path(tier)},
        engine_kwargs={**tier.engine_kwargs, "max_model_len": tier.max_model_len},
        runtime_env={"env_vars": {**OFFLINE_ENV, **tier.env}},
        accelerator_config={"kind": "cpu"},  # the default waits for a GPU forever
    )
