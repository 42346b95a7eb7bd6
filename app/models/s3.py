"""S3 (and S3-compatible stores: MinIO, Ceph, moto) through boto3: push and resumable pull.

Endpoint and credentials come from the environment as boto3 reads them
(`AWS_ENDPOINT_URL_S3`/`AWS_ENDPOINT_URL`, `AWS_ACCESS_KEY_ID`/`AWS_SECRET_ACCESS_KEY`/
`AWS_SESSION_TOKEN`, `AWS_DEFAULT_REGION`, profiles, instance and pod roles); in
Kubernetes the chart fills them from a Secret.

Pull: every file is split into chunks fetched in parallel with ranged GETs and written
in place (`pwrite`) into `<file>.part`; `<file>.part.json` records each chunk's bytes, so
an interrupted pull resumes where it stopped. `If-Match` on the object's ETag makes a
resume fail cleanly if the object changed meanwhile (the partial file is then dropped).
Each finished file is checked against the manifest's size and sha256 before it is
renamed to its final name.
"""

from __future__ import annotations

import functools
import json
import logging
import os
import threading
import time
from concurrent.futures import FIRST_EXCEPTION, ThreadPoolExecutor, wait
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field

from app.models.manifest import (
    MANIFEST_NAME,
    Manifest,
    ManifestFile,
    VerificationError,
    build_manifest,
    check_file,
    safe_relpath,
)
from app.models.progress import NoProgress, Progress

logger = logging.getLogger("ray.serve.tierserve.models")


class TransferSettings(BaseModel):
    """Parallelism and chunking of S3 transfers."""

    max_workers: int = Field(8, ge=1, le=64, description="concurrent ranged GETs / part uploads")
    chunk_bytes: int = Field(64 << 20, ge=1 << 10, description="bytes per ranged GET (and resume unit)")
    block_bytes: int = Field(1 << 20, ge=1 << 10, description="bytes read from a response at a time")
    # Resume state is saved at least this often per chunk (and always when a chunk stops).
    save_every_bytes: int = Field(8 << 20, ge=1 << 10)


class S3Error(RuntimeError):
    """S3 could not be used; the message names the URI, the endpoint and what to do."""


class S3Unreachable(S3Error):
    """The endpoint did not answer (as opposed to answering no)."""


class _Truncated(S3Error):
    """A response body ended before its range did."""


@dataclass(frozen=True)
class S3Uri:
    bucket: str
    prefix: str  # no leading or trailing slash; may be empty

    @classmethod
    def parse(cls, uri: str) -> S3Uri:
        if not uri.startswith("s3://"):
            raise ValueError(f"not an s3:// URI: {uri!r}")
        bucket, _, prefix = uri[len("s3://"):].partition("/")
        if not bucket:
            raise ValueError(f"{uri!r}: no bucket (expected s3://bucket/prefix)")
        return cls(bucket, prefix.strip("/"))

    def key(self, rel: str) -> str:
        return f"{self.prefix}/{rel}" if self.prefix else rel

    def __str__(self) -> str:
        return f"s3://{self.bucket}/{self.prefix}" if self.prefix else f"s3://{self.bucket}"


def endpoint_name() -> str:
    return (os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL")
            or "AWS S3 (no AWS_ENDPOINT_URL_S3 set)")


# The env a client is built from; a change (another endpoint, new keys) builds a new one.
_CLIENT_ENV = ("AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY",
               "AWS_SESSION_TOKEN", "AWS_DEFAULT_REGION", "AWS_REGION", "AWS_PROFILE")


def client(settings: TransferSettings | None = None) -> Any:
    """A boto3 S3 client (thread-safe), reused per process: building one takes ~0.1-0.5 s."""
    workers = (settings or TransferSettings()).max_workers
    return _client(workers, tuple(os.environ.get(k) for k in _CLIENT_ENV))


@functools.lru_cache(maxsize=8)
def _client(workers: int, env: tuple[str | None, ...]) -> Any:
    import boto3
    from botocore.config import Config

    return boto3.session.Session().client("s3", config=Config(
        max_pool_connections=workers + 4, retries={"max_attempts": 5, "mode": "standard"},
        connect_timeout=10, read_timeout=60))


def explain(exc: Exception, uri: str, what: str) -> S3Error:
    """Turn a boto error into one that names the source, the endpoint and the fix."""
    from botocore.exceptions import (
        ClientError,
        EndpointConnectionError,
        NoCredentialsError,
        PartialCredentialsError,
    )

    where = f"{uri} (endpoint {endpoint_name()})"
    if isinstance(exc, (NoCredentialsError, PartialCredentialsError)):
        return S3Error(f"{where}: no S3 credentials while {what}. Set AWS_ACCESS_KEY_ID and "
                       "AWS_SECRET_ACCESS_KEY (in Kubernetes: the chart's secrets.s3 Secret).")
    if isinstance(exc, EndpointConnectionError):
        return S3Unreachable(f"{where}: cannot connect while {what}: {exc}. Check AWS_ENDPOINT_URL_S3 "
                       "and that the store is reachable from this node.")
    if isinstance(exc, ClientError):
        code = str(exc.response.get("Error", {}).get("Code", ""))
        if code in ("NoSuchBucket",):
            return S3Error(f"{where}: bucket does not exist ({what}). Create it, or fix the URI.")
        if code in ("NoSuchKey", "404", "NotFound"):
            return S3Error(f"{where}: not found while {what}. Push the model first: "
                           f"`tierserve models push DIR {uri}`.")
        if code in ("AccessDenied", "403", "InvalidAccessKeyId", "SignatureDoesNotMatch",
                    "ExpiredToken", "InvalidToken"):
            return S3Error(f"{where}: access denied ({code}) while {what}. Check the credentials "
                           "(AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY) and the bucket policy.")
        if code in ("PreconditionFailed", "412"):
            return S3Error(f"{where}: an object changed during the download ({what}); pull again "
                           "(its partial file is then started over).")
        return S3Error(f"{where}: {code or 'error'} while {what}: {exc}")
    return S3Error(f"{where}: {type(exc).__name__} while {what}: {exc}")


# -- push -----------------------------------------------------------------------------------

def push(directory: Path, uri: str, *, settings: TransferSettings | None = None,
         progress: Progress | None = None, create_bucket: bool = False) -> Manifest:
    """Upload a model directory and then its manifest (last, so it only ever names a
    complete upload). An older manifest under the prefix is deleted first."""
    from boto3.s3.transfer import TransferConfig
    from botocore.exceptions import BotoCoreError, ClientError

    settings = settings or TransferSettings()
    progress = progress or NoProgress()
    loc, directory = S3Uri.parse(uri), Path(directory)
    if not directory.is_dir():
        raise S3Error(f"{directory}: not a directory; push takes a model directory")
    manifest = build_manifest(directory)
    s3 = client(settings)
    transfer = TransferConfig(multipart_threshold=settings.chunk_bytes,
                              multipart_chunksize=settings.chunk_bytes,
                              max_concurrency=settings.max_workers, use_threads=True)
    try:
        if create_bucket:
            try:
                s3.head_bucket(Bucket=loc.bucket)
            except ClientError:
                s3.create_bucket(Bucket=loc.bucket)
        s3.delete_object(Bucket=loc.bucket, Key=loc.key(MANIFEST_NAME))
        progress.start(f"push {uri}", manifest.total_bytes, 0)
        # Files in parallel; boto3 splits each big one into parallel multipart parts.
        with ThreadPoolExecutor(max_workers=min(settings.max_workers, len(manifest.files))) as pool:
            futures = [pool.submit(s3.upload_file, str(directory / f.path), loc.bucket,
                                   loc.key(f.path), Config=transfer, Callback=progress.advance)
                       for f in manifest.files]
            for future in futures:
                future.result()
        s3.put_object(Bucket=loc.bucket, Key=loc.key(MANIFEST_NAME), Body=manifest.to_bytes(),
                      ContentType="application/json")
    except (BotoCoreError, ClientError) as exc:
        raise explain(exc, uri, "pushing") from exc
    finally:
        progress.close()
    return manifest


# -- pull -----------------------------------------------------------------------------------

def fetch_manifest(s3: Any, uri: str) -> Manifest:
    from botocore.exceptions import BotoCoreError, ClientError

    loc = S3Uri.parse(uri)
    try:
        body = s3.get_object(Bucket=loc.bucket, Key=loc.key(MANIFEST_NAME))["Body"].read()
    except (BotoCoreError, ClientError) as exc:
        raise explain(exc, uri, f"reading its manifest {MANIFEST_NAME}") from exc
    try:
        return Manifest.model_validate_json(body)
    except ValueError as exc:
        raise S3Error(f"{uri}/{MANIFEST_NAME}: not a Tierserve manifest ({exc}); "
                      f"push the model with `tierserve models push DIR {uri}`") from exc


class PullStats(BaseModel):
    fetched_bytes: int = 0  # bytes transferred from S3 by this pull
    resumed_bytes: int = 0  # bytes already on disk from an earlier, interrupted pull


class _FileState:
    """One file's partial download: `<file>.part` written in place, chunk progress in JSON."""

    def __init__(self, staging: Path, entry: ManifestFile, etag: str, chunk_bytes: int) -> None:
        self.entry, self.etag = entry, etag
        self.final = staging / safe_relpath(entry.path)
        self.part = self.final.with_name(self.final.name + ".part")
        self.state = self.final.with_name(self.final.name + ".part.json")
        self.lock = threading.Lock()
        n = -(-entry.size // chunk_bytes)
        self.chunks = [(i * chunk_bytes, min(entry.size, (i + 1) * chunk_bytes)) for i in range(n)]
        self.done = [0] * n
        self.final.parent.mkdir(parents=True, exist_ok=True)
        saved = self._load()
        if saved is not None and saved.get("etag") == etag and saved.get("size") == entry.size \
                and saved.get("chunk_bytes") == chunk_bytes and self.part.is_file():
            self.done = [int(d) for d in saved["done"]]
        else:  # nothing usable: start this file over
            self.part.unlink(missing_ok=True)
        self._chunk_bytes = chunk_bytes
        self.fd = os.open(self.part, os.O_RDWR | os.O_CREAT, 0o644)
        os.ftruncate(self.fd, entry.size)

    def _load(self) -> dict | None:
        try:
            return json.loads(self.state.read_text())
        except (OSError, ValueError):
            return None

    def save(self) -> None:
        with self.lock:
            tmp = self.state.with_name(self.state.name + ".tmp")
            tmp.write_text(json.dumps({"etag": self.etag, "size": self.entry.size,
                                       "chunk_bytes": self._chunk_bytes, "done": self.done}))
            os.replace(tmp, self.state)

    @property
    def have(self) -> int:
        return sum(self.done)

    def close(self) -> None:
        os.close(self.fd)


def _fetch_chunk(s3: Any, loc: S3Uri, fs: _FileState, index: int, settings: TransferSettings,
                 progress: Progress, stats: PullStats, stats_lock: threading.Lock,
                 stop: threading.Event) -> None:
    start, end = fs.chunks[index]
    offset = start + fs.done[index]
    if offset >= end:
        return
    response = s3.get_object(Bucket=loc.bucket, Key=loc.key(fs.entry.path),
                             Range=f"bytes={offset}-{end - 1}", IfMatch=fs.etag)
    body, unsaved = response["Body"], 0
    try:
        while offset < end:
            if stop.is_set():
                return
            block = body.read(min(settings.block_bytes, end - offset))
            if not block:
                raise _Truncated(f"{loc}/{fs.entry.path}: the response ended at byte {offset} "
                                 f"of {end}; pull again to resume")
            os.pwrite(fs.fd, block, offset)
            offset += len(block)
            fs.done[index] = offset - start
            unsaved += len(block)
            with stats_lock:
                stats.fetched_bytes += len(block)
            progress.advance(len(block))
            if unsaved >= settings.save_every_bytes:
                fs.save()
                unsaved = 0
    finally:
        body.close()
        fs.save()  # whatever was written counts on the next try


def _fetch_chunk_retrying(*args: Any, attempts: int = 3) -> None:
    """A dropped connection or cut-off response costs a retry from the last byte written,
    not the pull; answers from S3 (denied, missing, changed) are not retried."""
    from botocore.exceptions import BotoCoreError

    for attempt in range(1, attempts + 1):
        try:
            return _fetch_chunk(*args)
        except (BotoCoreError, _Truncated) as exc:
            stop: threading.Event = args[-1]
            if attempt == attempts or stop.is_set():
                raise
            logger.warning("chunk of %s failed (%s), retry %d of %d", args[2].entry.path, exc,
                           attempt, attempts - 1)
            time.sleep(attempt)


def _finish_file(fs: _FileState, uri: str) -> None:
    """Check a fully written file against the manifest, then give it its final name."""
    os.fsync(fs.fd)
    problem = check_file(fs.part, fs.entry, what=uri)
    if problem is not None:
        fs.part.unlink(missing_ok=True)
        fs.state.unlink(missing_ok=True)
        raise VerificationError(
            f"{problem}. The downloaded file does not match the manifest and was deleted. If "
            f"the model in the bucket changed, push it again (`tierserve models push DIR {uri}`); "
            f"otherwise pull again.")
    os.replace(fs.part, fs.final)
    fs.state.unlink(missing_ok=True)


def download(s3: Any, uri: str, manifest: Manifest, staging: Path, *,
             settings: TransferSettings | None = None, progress: Progress | None = None) -> PullStats:
    """Fetch every manifest file into `staging`, resuming what an earlier pull left there."""
    from botocore.exceptions import BotoCoreError, ClientError

    settings = settings or TransferSettings()
    progress = progress or NoProgress()
    loc = S3Uri.parse(uri)
    staging.mkdir(parents=True, exist_ok=True)
    try:
        listed = _list_objects(s3, loc)
    except (BotoCoreError, ClientError) as exc:
        raise explain(exc, uri, "listing the model's files") from exc
    stats, stats_lock, stop = PullStats(), threading.Lock(), threading.Event()
    states: list[_FileState] = []
    try:
        for entry in manifest.files:
            final = staging / safe_relpath(entry.path)
            if final.is_file() and final.stat().st_size == entry.size:
                stats.resumed_bytes += entry.size  # verified and renamed by an earlier pull
                continue
            obj = listed.get(entry.path)
            if obj is None:
                raise S3Error(f"{uri}: the manifest names {entry.path} but the bucket has no "
                              f"{loc.key(entry.path)}; push the model again")
            if obj["Size"] != entry.size:
                raise VerificationError(
                    f"{uri}: {entry.path} is {obj['Size']} bytes in the bucket, the manifest "
                    f"says {entry.size}; push the model again (`tierserve models push DIR {uri}`)")
            states.append(_FileState(staging, entry, obj["ETag"], settings.chunk_bytes))
        stats.resumed_bytes += sum(fs.have for fs in states)
        progress.start(f"pull {uri}", manifest.total_bytes, stats.resumed_bytes)
        with ThreadPoolExecutor(max_workers=settings.max_workers) as pool:
            futures = [pool.submit(_fetch_chunk_retrying, s3, loc, fs, i, settings, progress,
                                   stats, stats_lock, stop)
                       for fs in states for i in range(len(fs.chunks))]
            finished, _ = wait(futures, return_when=FIRST_EXCEPTION)
            errors = [e for f in finished if (e := f.exception()) is not None]
            if errors:
                stop.set()
                for f in futures:
                    f.cancel()
                wait(futures)
                raise errors[0]
            # Hash the finished files in parallel too (hashlib releases the GIL).
            list(pool.map(lambda fs: _finish_file(fs, uri), states))
    except (BotoCoreError, ClientError) as exc:
        raise explain(exc, uri, "downloading") from exc
    finally:
        for fs in states:
            fs.close()
        progress.close()
    return stats


def _list_objects(s3: Any, loc: S3Uri) -> dict[str, dict[str, Any]]:
    prefix = f"{loc.prefix}/" if loc.prefix else ""
    found: dict[str, dict[str, Any]] = {}
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=loc.bucket, Prefix=prefix):
        for obj in page.get("Contents") or []:
            found[obj["Key"][len(prefix):]] = obj
    return found
