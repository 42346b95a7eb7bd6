"""Where a cold start goes: phases read from the logs each target writes anyway.

Bare vLLM: its own log (front end imported, engine process up, worker process up, engine
initialized). Tierserve: Serve's controller and replica logs (replica scheduled, constructor
started, RUNNING; millisecond stamps), the tier's own "replica ready in" line (model, engine,
warm-up), and vLLM's lines from the replica's stdout. vLLM stamps whole seconds, so phases
that start or end on one of its lines are good to about ±1 s.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from datetime import datetime
from pathlib import Path

# vLLM: "(EngineCore pid=11372) INFO 11-29 19:28:36 [core.py:133] Initializing a V1 LLM engine ..."
_VLLM_STAMP = r"INFO (\d\d-\d\d \d\d:\d\d:\d\d) \[[^\]]+\] "
VLLM_MARKS = {
    "front end imported": re.compile(r"\(APIServer pid=\d+\) " + _VLLM_STAMP),
    "engine process up": re.compile(r"\(EngineCore[^)]*\) " + _VLLM_STAMP + "Initializing a V1 LLM engine"),
    "worker process up": re.compile(r"\(Worker[^)]*\) " + _VLLM_STAMP + "Starting to load model"),
    "engine initialized": re.compile(r"\(EngineCore[^)]*\) " + _VLLM_STAMP + "init engine"),
}
# Serve: "INFO 2026-11-29 19:28:56,061 controller 11615 -- Starting Replica(id='wyl9pd1w', ..."
_SERVE_STAMP = r"^\w+ (\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}) "
_REPLICA = r"Replica\(id='(\w+)', deployment='{deployment}', app='{app}'\)"
READY_LINE = re.compile(r"replica ready in ([\d.]+)s "
                        r"\(model ([\d.]+)s, engine ([\d.]+)s, warm-up ([\d.]+)s\)")


def _vllm_time(stamp: str, year: int) -> float:
    return datetime.strptime(f"{year}-{stamp}", "%Y-%m-%d %H:%M:%S").timestamp()


def _serve_time(stamp: str) -> float:
    return datetime.strptime(stamp, "%Y-%m-%d %H:%M:%S,%f").timestamp()


def vllm_marks(lines: Iterable[str], year: int) -> dict[str, float]:
    """The first time each of vLLM's start-up steps was logged (wall clock, whole seconds)."""
    found: dict[str, float] = {}
    for line in lines:
        for name, pattern in VLLM_MARKS.items():
            if name not in found and (m := pattern.search(line)):
                found[name] = _vllm_time(m.group(1), year)
    return found


def phases(start: float, marks: dict[str, float], ready: float, order: list[str]) -> list[tuple[str, float]]:
    """Seconds from each mark to the next, in `order`, from `start` to `ready`; a mark that
    was not logged is left out (its time goes to the next phase)."""
    out, last, prev = [], start, "start"
    for name in [*order, "ready"]:
        at = ready if name == "ready" else marks.get(name)
        if at is None:
            continue
        out.append((f"{prev} -> {name}", at - last))
        last, prev = at, name
    return out


def bare_phases(log: Path, start: float, ready: float) -> list[tuple[str, float]]:
    year = datetime.fromtimestamp(start).year
    return phases(start, vllm_marks(log.read_text(errors="replace").splitlines(), year), ready,
                  list(VLLM_MARKS))


TIERSERVE_ORDER = ["replica scheduled", "constructor started", "engine process up", "worker process up",
                   "engine initialized", "warm-up done", "replica RUNNING"]


def serve_marks(logs: Path, deployment: str, app: str, after: float
                ) -> tuple[dict[str, float], dict[str, float]]:
    """Marks of the first replica of `deployment` started after `after`, from a Ray session's
    logs directory; and the tier's own split of its constructor (model, engine, warm-up)."""
    replica = _REPLICA.format(deployment=re.escape(deployment), app=re.escape(app))
    starting = re.compile(_SERVE_STAMP + r".*Starting " + replica)
    started = re.compile(_SERVE_STAMP + r".*" + replica + r" started successfully.*\(PID: (\d+)\)")
    marks: dict[str, float] = {}
    rid = pid = None
    for path in sorted((logs / "serve").glob("controller_*.log")):
        for line in path.read_text(errors="replace").splitlines():
            if rid is None and (m := starting.search(line)) and _serve_time(m.group(1)) >= after:
                rid, marks["replica scheduled"] = m.group(2), _serve_time(m.group(1))
            elif rid is not None and (m := started.search(line)) and m.group(2) == rid:
                marks["replica RUNNING"], pid = _serve_time(m.group(1)), m.group(3)
    split: dict[str, float] = {}
    if rid is None:
        return marks, split
    for path in (logs / "serve").glob(f"replica_{app}_{deployment}_{rid}.log"):
        for line in path.read_text(errors="replace").splitlines():
            stamp = re.search(_SERVE_STAMP, line)
            if stamp and "Started initializing replica" in line:
                marks["constructor started"] = _serve_time(stamp.group(1))
            elif stamp and (m := READY_LINE.search(line)):
                marks["warm-up done"] = _serve_time(stamp.group(1))
                split = dict(zip(("constructor", "model", "engine", "warm-up"),
                                 map(float, m.groups()), strict=True))
    if pid is not None:  # vLLM's lines go to the replica's stdout
        year = datetime.fromtimestamp(after).year
        for path in logs.glob(f"worker-*-{pid}.out"):
            marks.update(vllm_marks(path.read_text(errors="replace").splitlines(), year))
    return marks, split


def tierserve_phases(logs: Path, deployment: str, start: float, ready: float,
                     app: str = "tierserve") -> tuple[list[tuple[str, float]], dict[str, float]]:
    marks, split = serve_marks(logs, deployment, app, start)
    marks.pop("front end imported", None)  # no APIServer in a replica
    return phases(start, marks, ready, TIERSERVE_ORDER), split
