"""Tierserve's model cache on one node: complete models only, keyed by source and version.

Layout under the root (`TIERSERVE_MODEL_CACHE`, default `~/.cache/tierserve/models`: outside
any checkout, so every clone, replica and CLI run of a user on a node shares it):

    <slug>/<version>/         a complete, verified model (plus .tierserve-source.json)
    .staging/<slug>@<version>/  a download in progress (partial files and their resume state)
    .locks/<slug>.lock        held (fcntl) by the one process downloading that source

A model appears under `<slug>/<version>` only by one rename of its finished staging
directory, so a reader never sees a partial model. Hugging Face ids stay in the Hugging
Face cache (HF_HOME / HF_HUB_CACHE), which has its own layout and locks.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import logging
import os
import re
import shutil
import time
from collections.abc import Iterator
from pathlib import Path

from pydantic import BaseModel

from app.models.manifest import MANIFEST_NAME, SOURCE_NAME

logger = logging.getLogger("ray.serve.tierserve.models")

CACHE_ENV = "TIERSERVE_MODEL_CACHE"


def default_cache_dir() -> Path:
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV]).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or "~/.cache"
    return Path(base).expanduser() / "tierserve" / "models"


def source_slug(source: str) -> str:
    """A readable directory name for a source, with a digest so distinct sources never share one."""
    readable = re.sub(r"[^A-Za-z0-9._-]+", "--", source.replace("://", "--")).strip("-")[:80]
    return f"{readable}-{hashlib.sha256(source.encode()).hexdigest()[:8]}"


class CacheEntry(BaseModel):
    """What `.tierserve-source.json` records about one cached model."""

    source: str
    version: str
    path: str
    total_bytes: int
    files: int
    pulled_at: str
    seconds: float


class ModelCache:
    def __init__(self, root: Path | None = None) -> None:
        self.root = Path(root) if root is not None else default_cache_dir()

    def entry_dir(self, source: str, version: str) -> Path:
        return self.root / source_slug(source) / version

    def staging_dir(self, source: str, version: str) -> Path:
        return self.root / ".staging" / f"{source_slug(source)}@{version}"

    def lock_path(self, source: str) -> Path:
        return self.root / ".locks" / f"{source_slug(source)}.lock"

    @contextlib.contextmanager
    def lock(self, source: str) -> Iterator[float]:
        """Hold the source's download lock; yields the seconds spent waiting for it.

        flock, not a lock file's existence: the kernel drops it when its holder dies, so a
        killed download never blocks the next one (which resumes from the staging dir).
        """
        path = self.lock_path(source)
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "a+") as f:
            waited = 0.0
            try:
                fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                logger.info("waiting for another process downloading %s (lock %s)", source, path)
                t0 = time.monotonic()
                fcntl.flock(f, fcntl.LOCK_EX)
                waited = time.monotonic() - t0
                logger.info("lock on %s acquired after %.1fs", source, waited)
            try:
                yield waited
            finally:
                fcntl.flock(f, fcntl.LOCK_UN)

    def publish(self, staging: Path, entry: CacheEntry) -> Path:
        """Move a finished staging dir into place: one rename, so readers see all or nothing."""
        (staging / SOURCE_NAME).write_text(entry.model_dump_json(indent=2) + "\n")
        target = Path(entry.path)
        target.parent.mkdir(parents=True, exist_ok=True)
        if target.exists():  # published meanwhile by a process that ignored the lock
            shutil.rmtree(staging, ignore_errors=True)
            return target
        os.rename(staging, target)
        return target

    def entries(self) -> list[CacheEntry]:
        found = []
        for marker in sorted(self.root.glob(f"*/*/{SOURCE_NAME}")):
            try:
                found.append(CacheEntry.model_validate_json(marker.read_text()))
            except ValueError:
                logger.warning("unreadable cache record %s (ignored)", marker)
        return found

    def latest(self, source: str) -> CacheEntry | None:
        mine = [e for e in self.entries() if e.source == source and Path(e.path).is_dir()]
        return max(mine, key=lambda e: e.pulled_at) if mine else None

    def staging_bytes(self) -> dict[str, int]:
        """Partial downloads left behind (they resume on the next pull)."""
        staging = self.root / ".staging"
        if not staging.is_dir():
            return {}
        # Blocks, not sizes: a .part file is sparse until its chunks arrive.
        return {d.name: sum(f.stat().st_blocks * 512 for f in d.rglob("*") if f.is_file())
                for d in staging.iterdir() if d.is_dir()}


def read_entry(path: Path) -> CacheEntry | None:
    marker = path / SOURCE_NAME
    if not marker.is_file():
        return None
    return CacheEntry.model_validate(json.loads(marker.read_text()))


def has_manifest(path: Path) -> bool:
    return (path / MANIFEST_NAME).is_file()
