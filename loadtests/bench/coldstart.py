"""`tierserve bench cold-start`: deploy → ready for one Tierserve tier vs a bare vLLM server.

Targets start one after another (never together), so each start has the machine. Each
target's time is split into phases read from its logs (loadtests/bench/coldstart_phases.py).
"""

from __future__ import annotations

import time
from dataclasses import replace
from pathlib import Path
from typing import Any

from app.config.loader import load_config
from loadtests.bench import coldstart_phases as cp
from loadtests.bench.overhead import BARE, TIERSERVE, OverheadPlan, Running, running_targets


def run_cold_start(plan: OverheadPlan, log_dir: Path, targets: list[str] | None = None) -> dict[str, Any]:
    """{"cold_start_s": {target: s}, "phases_s": {target: [[phase, s], ...]}, "tier_split_s": ...}"""
    log_dir.mkdir(parents=True, exist_ok=True)
    plan = replace(plan, targets=targets or [BARE, TIERSERVE])
    with running_targets(plan, log_dir) as run:
        return {"cold_start_s": dict(run.cold_start_s), **_phases(plan, run, log_dir)}


def _phases(plan: OverheadPlan, run: Running, log_dir: Path) -> dict[str, Any]:
    out: dict[str, Any] = {"phases_s": {}}
    for name, start in run.started_at.items():
        ready = start + run.cold_start_s[name]
        if name == BARE:
            out["phases_s"][name] = cp.bare_phases(log_dir / "bare-vllm.log", start, ready)
        elif name == TIERSERVE:
            time.sleep(0.5)  # Serve's controller logs RUNNING a beat after the ingress says ready
            logs = Path(plan.temp_dir) / "session_latest" / "logs"
            deployment = load_config(plan.profile).tier(plan.tier).deployment_name
            out["phases_s"][name], out["tier_split_s"] = cp.tierserve_phases(logs, deployment, start, ready)
    return out


def table(result: dict[str, Any]) -> str:
    """The phases of each target as text, seconds from one mark to the next."""
    lines = []
    for name, seconds in result["cold_start_s"].items():
        lines.append(f"{name:<16} {seconds:6.1f} s to ready")
        for phase, s in result.get("phases_s", {}).get(name, []):
            lines.append(f"    {phase:<48} {s:6.1f} s")
    if split := result.get("tier_split_s"):
        lines.append("tier constructor: " + ", ".join(f"{k} {v:.2f} s" for k, v in split.items()))
    cold = result["cold_start_s"]
    if cold.get(BARE) and cold.get(TIERSERVE):
        lines.append(f"ratio tierserve / bare-vllm: {cold[TIERSERVE] / cold[BARE]:.2f}x")
    return "\n".join(lines)
