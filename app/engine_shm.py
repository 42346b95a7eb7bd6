"""vLLM engines' shared-memory segments: find them, record whose they are, remove leftovers.

Under Ray each CPU engine leaves `/dev/shm/psm_*` and `sem.mp-*` segments (~160–250 MB)
after it stops, and a replica killed outright leaves them too. A replica records its
engine's segments and processes in a ledger directory (`TIERSERVE_SHM_LEDGER`, set by
whoever started the Ray node), so the stack's `down` can remove them even when the
replica that mapped them died long before.
"""

from __future__ import annotations

import json
import os
from collections.abc import Collection
from pathlib import Path

import psutil

LEDGER_ENV = "TIERSERVE_SHM_LEDGER"
SHM = Path("/dev/shm")


def shm_segments() -> set[Path]:
    """Every segment of the kinds vLLM leaves behind, whoever made it."""
    return set(SHM.glob("psm_*")) | set(SHM.glob("sem.mp-*"))


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


def remove_orphaned_segments(ours: set[Path]) -> list[Path]:
    """Delete those of `ours` that nothing maps any more."""
    left = sorted(s for s in ours - mapped_shm_segments() if s.exists())
    for segment in left:
        segment.unlink(missing_ok=True)
    return left


def record_engine(name: str, procs: list[psutil.Process], appeared: Collection[Path] = frozenset()
                  ) -> Path | None:
    """Write `procs` (pid and start time), the segments they map and those that `appeared`
    while the engine started (multiprocessing's named semaphores are unmapped by then) to
    the ledger, when one is configured."""
    ledger = os.environ.get(LEDGER_ENV)
    if not ledger:
        return None
    path = Path(ledger) / f"{name}-{os.getpid()}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    alive: list[tuple[int, float]] = []
    for proc in procs:
        try:
            alive.append((proc.pid, proc.create_time()))
        except psutil.Error:
            continue
    mapped = {s for s in mapped_shm_segments([p for p, _ in alive]) if s.parent == SHM}
    segments = sorted(str(s) for s in mapped | set(appeared))
    path.write_text(json.dumps({"processes": alive, "segments": segments}))
    return path


def read_ledger(ledger: Path) -> tuple[list[psutil.Process], set[Path]]:
    """The recorded processes still alive (same pid and start time: never a reused pid),
    and every recorded segment."""
    procs: list[psutil.Process] = []
    segments: set[Path] = set()
    for entry in ledger.glob("*.json"):
        try:
            data = json.loads(entry.read_text())
        except (OSError, ValueError):
            continue
        segments |= {Path(s) for s in data.get("segments", [])}
        for pid, started in data.get("processes", []):
            try:
                proc = psutil.Process(int(pid))
                if abs(proc.create_time() - float(started)) < 0.01:
                    procs.append(proc)
            except psutil.Error:
                continue
    return procs, segments
