"""The manifest of a model directory: every file with its size and sha256.

`tierserve models push` writes it next to the files (uploaded last, so a manifest in a
bucket always describes a complete upload); a pull checks every file against it before
the model becomes visible in the cache, and `tierserve models verify` re-checks it later.
The manifest's own digest is the model's version: same bytes, same version.
"""

from __future__ import annotations

import hashlib
import json
import os
from datetime import UTC, datetime
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field

MANIFEST_NAME = "tierserve-manifest.json"
# Written by the cache next to a pulled model (where it came from, when); never uploaded.
SOURCE_NAME = ".tierserve-source.json"
_HASH_BLOCK = 4 << 20


class ManifestFile(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    path: str = Field(description="POSIX path relative to the model directory")
    size: int = Field(ge=0)
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")


class Manifest(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    format: int = 1
    created: str = ""
    files: list[ManifestFile]

    @property
    def total_bytes(self) -> int:
        return sum(f.size for f in self.files)

    def to_bytes(self) -> bytes:
        return (json.dumps(self.model_dump(), indent=2, sort_keys=True) + "\n").encode()

    @property
    def version(self) -> str:
        """Content version: the digest of the file list (not of `created`), 16 hex digits."""
        listing = json.dumps([f.model_dump() for f in self.files], sort_keys=True).encode()
        return hashlib.sha256(listing).hexdigest()[:16]


class VerificationError(RuntimeError):
    """A file does not match its manifest; the message names the model, file and fix."""


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(_HASH_BLOCK):
            digest.update(block)
    return digest.hexdigest()


def model_files(directory: Path) -> list[Path]:
    """The files a manifest covers: every regular file, except Tierserve's own metadata."""
    skip = {MANIFEST_NAME, SOURCE_NAME}
    return sorted(p for p in directory.rglob("*")
                  if p.is_file() and not p.is_symlink() and p.name not in skip
                  and not any(part.startswith(".") for part in p.relative_to(directory).parts))


def build_manifest(directory: Path) -> Manifest:
    files = [ManifestFile(path=p.relative_to(directory).as_posix(), size=p.stat().st_size,
                          sha256=sha256_file(p)) for p in model_files(directory)]
    if not files:
        raise VerificationError(f"{directory}: no files to push (is it a model directory?)")
    return Manifest(created=datetime.now(UTC).isoformat(timespec="seconds"), files=files)


def read_manifest(path: Path) -> Manifest:
    return Manifest.model_validate_json(path.read_bytes())


def check_file(path: Path, entry: ManifestFile, *, what: str) -> str | None:
    """None if `path` matches `entry`, else why not (size first: it costs nothing)."""
    if not path.is_file():
        return f"{what}: {entry.path} is missing"
    size = path.stat().st_size
    if size != entry.size:
        return f"{what}: {entry.path} has {size} bytes, the manifest says {entry.size}"
    got = sha256_file(path)
    if got != entry.sha256:
        return f"{what}: {entry.path} has sha256 {got[:12]}…, the manifest says {entry.sha256[:12]}…"
    return None


def verify_dir(directory: Path, manifest: Manifest, *, what: str) -> list[str]:
    """Every problem of `directory` against `manifest` (empty when it matches)."""
    return [p for f in manifest.files if (p := check_file(directory / f.path, f, what=what)) is not None]


def safe_relpath(path: str) -> str:
    """Reject manifest paths that would escape the model directory."""
    norm = os.path.normpath(path)
    if norm.startswith(("..", "/")) or os.path.isabs(norm):
        raise VerificationError(f"manifest path {path!r} escapes the model directory")
    return norm
