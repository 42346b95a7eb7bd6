"""Scorer artifacts that travel in the router's user_config, so a promoted one reaches router
replicas on any node (a KubeRay pod, a worker of `tierserve cluster up`) without being on its disk.

A shipped artifact (under app/routing/artifacts/: in every install of the repo and in the image)
travels as its sha256 only, and the router checks its own copy against it. Any other travels
whole, JSON text and sha256: the router verifies the digest, then writes the text to a node-local
file named by the digest and the original file name, which the loaders (app/routing/scorer.py)
read like any artifact; decision logs carry the same version (name@sha256 prefix) as on the
node it came from.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field

from app.config.loader import REPO_ROOT

SHIPPED_DIR = REPO_ROOT / "app" / "routing" / "artifacts"
# Serve keeps user_config in its checkpoint and KubeRay in the RayService object (etcd); a
# scorer artifact is ~32 KB.
MAX_CONTENT_CHARS = 1 << 20


class CarriedArtifact(BaseModel):
    """One artifact in the router's user_config (`artifacts:`, keyed by the configured path)."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    # The artifact's JSON text; None for a shipped one, read from the router's own node.
    content: str | None = Field(None, max_length=MAX_CONTENT_CHARS)


def local_path(path: str) -> Path:
    """Where a configured artifact path points on this node (relative: to the repo root)."""
    return REPO_ROOT / path


def is_shipped(path: str) -> bool:
    return local_path(path).resolve().is_relative_to(SHIPPED_DIR.resolve())


def sha256_of(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def carry(path: str) -> CarriedArtifact:
    """The user_config entry for the artifact at `path` (read here; OSError/ValueError if not)."""
    data = local_path(path).read_bytes()
    if is_shipped(path):
        return CarriedArtifact(sha256=sha256_of(data))
    return CarriedArtifact(sha256=sha256_of(data), content=data.decode("utf-8"))


def cache_dir() -> Path:
    """Node-local home of carried artifacts (per user: /tmp is shared)."""
    return Path(tempfile.gettempdir()) / f"tierserve-artifacts-{os.getuid()}"


def materialize(path: str, artifact: CarriedArtifact) -> str:
    """The path to load `path`'s artifact from on this node, once it is checked to be the one
    the user_config names (ValueError saying what differs if not)."""
    if artifact.content is None:
        try:
            found = sha256_of(local_path(path).read_bytes())
        except OSError as exc:
            raise ValueError(f"scorer artifact {path}: the user_config names a shipped artifact this "
                             f"node does not have ({exc})") from exc
        if found != artifact.sha256:
            raise ValueError(f"scorer artifact {path}: this node's copy has sha256 {found[:12]}, the "
                             f"user_config names {artifact.sha256[:12]}: the node's install (image) "
                             "is from another commit; roll out one with this artifact, or promote a "
                             "copy from outside app/routing/artifacts/ so the user_config carries it")
        return path
    data = artifact.content.encode("utf-8")
    if (found := sha256_of(data)) != artifact.sha256:
        raise ValueError(f"scorer artifact {path}: the carried content has sha256 {found[:12]}, not "
                         f"the {artifact.sha256[:12]} it was promoted with (altered on the way); "
                         "render and deploy it again")
    target = cache_dir() / artifact.sha256 / Path(path).name
    if not target.is_file() or sha256_of(target.read_bytes()) != artifact.sha256:
        cache_dir().mkdir(mode=0o700, exist_ok=True)
        target.parent.mkdir(exist_ok=True)
        partial = target.with_name(f".{target.name}.{os.getpid()}")
        partial.write_bytes(data)
        partial.replace(target)  # atomic: a replica beside this one never reads half a file
    return str(target)
