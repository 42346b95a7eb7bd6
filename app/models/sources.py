"""A tier's `model_source` -> a local directory vLLM can load.

Three kinds, told apart by their shape:
- `s3://bucket/prefix`: pulled into Tierserve's model cache (app/models/cache.py), verified
  against the manifest `tierserve models push` wrote, resumable, one download per node;
- a local directory (absolute, `./…`, or one that exists relative to the working
  directory or the repo): used as it is;
- anything else of the form `org/name[@revision]`: a Hugging Face id, through the
  Hugging Face cache (app/models/hf.py).

Why not Ray Serve LLM's own mirroring (`model_source: s3://…`, CloudMirrorConfig): it
downloads into the HF cache directory with a lock, but keeps no manifest or checksums,
writes files in place (a reader can see a partial model), does not resume, reports no
progress, and logs download errors instead of raising them. Tierserve resolves the
source itself in the replica and hands vLLM a local path, so Ray's path is never taken.
"""

from __future__ import annotations

import logging
import re
import time
from datetime import UTC, datetime
from enum import Enum
from pathlib import Path

from pydantic import BaseModel

from app.config.loader import REPO_ROOT
from app.models import hf, s3
from app.models.cache import CacheEntry, ModelCache
from app.models.manifest import MANIFEST_NAME
from app.models.progress import NoProgress, Progress

logger = logging.getLogger("ray.serve.tierserve.models")

_HF_ID = re.compile(r"^[A-Za-z0-9][\w.-]*(/[\w.-]+)?(@[\w./-]+)?$")


class SourceKind(str, Enum):
    LOCAL = "local"
    HF = "hf"
    S3 = "s3"


class ModelSourceError(ValueError):
    """A model source that cannot be used; the message names it and says what to do."""


class Resolved(BaseModel):
    """Where a source ended up on this node, and what it cost to get it there."""

    source: str
    kind: SourceKind
    path: str
    version: str | None = None  # manifest digest (s3), snapshot commit (hf)
    cache_hit: bool = True
    fetched_bytes: int = 0
    resumed_bytes: int = 0
    total_bytes: int = 0
    seconds: float = 0.0
    lock_wait_s: float = 0.0

    @property
    def mb_per_s(self) -> float:
        return self.fetched_bytes / 1e6 / self.seconds if self.seconds and self.fetched_bytes else 0.0


def local_path(source: str) -> Path | None:
    """The directory a local source names, if it exists (cwd first, then the repo root)."""
    path = Path(source).expanduser()
    candidates = [path] if path.is_absolute() else [Path.cwd() / path, REPO_ROOT / path]
    return next((c for c in candidates if c.is_dir()), None)


def kind_of(source: str) -> SourceKind:
    if source.startswith("s3://"):
        return SourceKind.S3
    if "://" in source:
        raise ModelSourceError(f"model source {source!r}: unsupported scheme; use a local path, "
                               "a Hugging Face id (org/name) or s3://bucket/prefix")
    if source.startswith(("/", "./", "../", "~")) or local_path(source) is not None:
        return SourceKind.LOCAL
    if _HF_ID.match(source):
        return SourceKind.HF
    raise ModelSourceError(f"model source {source!r} is not a directory here and not a Hugging "
                           "Face id (org/name[@revision])")


def resolve(source: str, *, cache: ModelCache | None = None, progress: Progress | None = None,
            settings: s3.TransferSettings | None = None) -> Resolved:
    kind = kind_of(source)
    if kind is SourceKind.LOCAL:
        path = local_path(source)
        if path is None:
            raise ModelSourceError(f"model source {source!r}: no such directory (relative paths are "
                                   f"looked up in {Path.cwd()} and {REPO_ROOT})")
        return Resolved(source=source, kind=kind, path=str(path))
    if kind is SourceKind.HF:
        if (path := local_path(source)) is not None:  # a local dir shaped like an id wins
            return Resolved(source=source, kind=SourceKind.LOCAL, path=str(path))
        got = hf.resolve(source)
        return Resolved(source=source, kind=kind, path=got.path, version=got.revision,
                        cache_hit=got.cache_hit, seconds=got.seconds)
    return pull_s3(source.rstrip("/"), cache=cache or ModelCache(), progress=progress,
                   settings=settings)


def pull_s3(uri: str, *, cache: ModelCache, progress: Progress | None = None,
            settings: s3.TransferSettings | None = None) -> Resolved:
    """The cached copy of the model at `uri`, downloading it once per node and version."""
    t0 = time.monotonic()
    client = s3.client(settings)
    try:
        manifest = s3.fetch_manifest(client, uri)
    except s3.S3Unreachable as exc:
        # Unreachable store: serve the newest copy this node already has, and say so.
        if (entry := cache.latest(uri)) is not None:
            logger.warning("%s; using the cached version %s from %s", exc, entry.version,
                           entry.pulled_at)
            return Resolved(source=uri, kind=SourceKind.S3, path=entry.path, version=entry.version,
                            total_bytes=entry.total_bytes, seconds=time.monotonic() - t0)
        raise
    version = manifest.version
    target = cache.entry_dir(uri, version)

    def hit(waited: float = 0.0) -> Resolved:
        return Resolved(source=uri, kind=SourceKind.S3, path=str(target), version=version,
                        total_bytes=manifest.total_bytes, seconds=time.monotonic() - t0,
                        lock_wait_s=waited)

    if target.is_dir():
        return hit()
    with cache.lock(uri) as waited:
        if target.is_dir():  # another process finished it while this one waited
            return hit(waited)
        staging = cache.staging_dir(uri, version)
        stats = s3.download(client, uri, manifest, staging, settings=settings,
                            progress=progress or NoProgress())
        (staging / MANIFEST_NAME).write_bytes(manifest.to_bytes())
        seconds = time.monotonic() - t0
        cache.publish(staging, CacheEntry(
            source=uri, version=version, path=str(target), total_bytes=manifest.total_bytes,
            files=len(manifest.files), seconds=round(seconds, 3),
            pulled_at=datetime.now(UTC).isoformat(timespec="seconds")))
    return Resolved(source=uri, kind=SourceKind.S3, path=str(target), version=version,
                    cache_hit=False, fetched_bytes=stats.fetched_bytes,
                    resumed_bytes=stats.resumed_bytes, total_bytes=manifest.total_bytes,
                    seconds=time.monotonic() - t0, lock_wait_s=waited)
