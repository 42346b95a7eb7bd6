"""`tierserve bench cold-start`: deploy → ready for one Tierserve tier vs a bare vLLM server.

Targets start one after another (never together), so each start has the machine.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from loadtests.bench.overhead import BARE, TIERSERVE, OverheadPlan, running_targets


def run_cold_start(plan: OverheadPlan, log_dir: Path, targets: list[str] | None = None) -> dict[str, float]:
    log_dir.mkdir(parents=True, exist_ok=True)
    plan = replace(plan, targets=targets or [BARE, TIERSERVE])
    with running_targets(plan, log_dir) as run:
        return dict(run.cold_start_s)
