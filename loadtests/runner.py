"""Run one scenario headless with locust, bounded in time, and write its results folder.

results/<timestamp>-<scenario>/: locust CSVs and HTML report, requests.jsonl,
summary.json, latency_vs_concurrency.png, tier_mix.png.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from loadtests.plots import plot_tier_mix, plot_vs_concurrency
from loadtests.prompts import PROMPTS_ENV
from loadtests.records import RECORDS_ENV, read_records
from loadtests.scenario import ENV_VAR, Scenario, require_loopback
from loadtests.summary import summarize

LOCUSTFILE = Path(__file__).with_name("locustfile.py")
GRACE_S = 60  # on top of the scenario's own time, before the run is killed


def results_dir(root: Path, label: str) -> Path:
    path = root / f"{time.strftime('%Y%m%d-%H%M%S')}-{label}"
    path.mkdir(parents=True, exist_ok=False)
    return path


def locust_command(scenario: Scenario, base_url: str, out: Path) -> list[str]:
    return [sys.executable, "-m", "locust", "-f", str(LOCUSTFILE), "--headless",
            "--host", base_url, "--csv", str(out / "locust"), "--csv-full-history",
            "--html", str(out / "locust_report.html"), "--only-summary",
            "--stop-timeout", "30", "--loglevel", "WARNING"]


def run_scenario(scenario: Scenario, base_url: str, out: Path,
                 prompts: Path | None = None) -> dict[str, Any]:
    """Run `scenario` against `base_url` (loopback only) and write everything into `out`."""
    base_url = require_loopback(base_url)
    records_path = out / "requests.jsonl"
    records_path.touch()
    env = {**os.environ, ENV_VAR: scenario.to_json(), RECORDS_ENV: str(records_path)}
    if prompts is not None:
        env[PROMPTS_ENV] = str(prompts)
    started = time.time()
    with (out / "locust.log").open("w") as log:
        proc = subprocess.run(locust_command(scenario, base_url, out), env=env, stdout=log,
                              stderr=subprocess.STDOUT, timeout=scenario.total_s + GRACE_S)
    records = read_records(records_path)
    summary = {"scenario": json.loads(scenario.to_json()), "base_url": base_url,
               "started_at": started, "locust_exit_code": proc.returncode,
               **summarize(records)}
    (out / "summary.json").write_text(json.dumps(summary, indent=2))
    plot_vs_concurrency(summary, out / "latency_vs_concurrency.png")
    plot_tier_mix(records, out / "tier_mix.png")
    return summary
