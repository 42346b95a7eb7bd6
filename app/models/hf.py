"""Hugging Face ids through huggingface_hub's own cache (HF_HOME / HF_HUB_CACHE).

huggingface_hub already does what an HF download needs (per-file locks, resume of
`.incomplete` blobs, etag checks, HF_TOKEN); this module only picks the files vLLM
loads, honours offline mode read at call time (huggingface_hub reads its env once, at
import), and turns "not cached and no hub" into an error that names the id.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

from pydantic import BaseModel

# What vLLM loads from a repo: config, tokenizer and safetensors weights (PyTorch .bin only
# where a repo has no safetensors); never the `original/` checkpoints some repos (Llama) carry.
ALLOW_PATTERNS = ["*.json", "*.safetensors", "*.model", "*.txt", "*.tiktoken", "*.jinja", "*.py"]
IGNORE_PATTERNS = ["original/*", "*.pth"]
_TRUE = {"1", "ON", "YES", "TRUE"}


class HFError(RuntimeError):
    """A Hugging Face id could not be resolved; the message names the id and the fix."""


class HFResult(BaseModel):
    path: str
    revision: str  # the snapshot's commit hash
    cache_hit: bool
    seconds: float


def offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "").upper() in _TRUE


def hub_cache_dir() -> Path:
    if os.environ.get("HF_HUB_CACHE"):
        return Path(os.environ["HF_HUB_CACHE"]).expanduser()
    home = os.environ.get("HF_HOME") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or "~/.cache", "huggingface")
    return Path(home).expanduser() / "hub"


def _has_safetensors(repo_id: str, revision: str | None, endpoint: str | None) -> bool:
    from huggingface_hub import HfApi

    try:
        files = HfApi(endpoint=endpoint).list_repo_files(repo_id, revision=revision)
    except Exception:  # noqa: BLE001 - snapshot_download below reports the hub's answer properly
        return True
    return any(f.endswith(".safetensors") for f in files)


def split_id(source: str) -> tuple[str, str | None]:
    """`org/name@revision` -> (`org/name`, `revision`)."""
    repo, _, rev = source.partition("@")
    return repo, rev or None


def resolve(source: str) -> HFResult:
    """The local snapshot of `source`, downloading it first unless offline."""
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import (
        GatedRepoError,
        HfHubHTTPError,
        LocalEntryNotFoundError,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )

    repo_id, revision = split_id(source)
    cache = hub_cache_dir()
    kwargs: dict[str, Any] = dict(repo_id=repo_id, revision=revision, cache_dir=str(cache),
                  allow_patterns=ALLOW_PATTERNS, ignore_patterns=IGNORE_PATTERNS,
                  endpoint=os.environ.get("HF_ENDPOINT") or None)
    t0 = time.monotonic()
    try:
        cached = snapshot_download(**kwargs, local_files_only=True)
    except (LocalEntryNotFoundError, FileNotFoundError):
        cached = None
    if cached is not None and offline():
        return HFResult(path=cached, revision=Path(cached).name, cache_hit=True,
                        seconds=time.monotonic() - t0)
    if offline():
        raise HFError(
            f"Hugging Face model {source!r} is not in the Hugging Face cache ({cache}) and "
            f"HF_HUB_OFFLINE=1 forbids downloading it. Pull it where the hub is reachable "
            f"(`tierserve models pull {source}`, with HF_TOKEN for gated models) into this cache, "
            f"or set HF_HOME/HF_HUB_CACHE to a cache that has it.")
    try:  # online: let the hub say whether the cached revision is current
        if not _has_safetensors(repo_id, revision, kwargs["endpoint"]):
            kwargs["allow_patterns"] = [*ALLOW_PATTERNS, "*.bin"]
        path = snapshot_download(**kwargs)
    except GatedRepoError as exc:
        raise HFError(f"Hugging Face model {source!r} is gated: accept its licence on the hub and "
                      f"set HF_TOKEN (in Kubernetes: the chart's secrets.huggingFace). {exc}") from exc
    except RepositoryNotFoundError as exc:
        raise HFError(f"Hugging Face model {source!r} does not exist, or is private and HF_TOKEN "
                      f"is missing or lacks access. {exc}") from exc
    except RevisionNotFoundError as exc:
        raise HFError(f"Hugging Face model {source!r}: no such revision. {exc}") from exc
    except (LocalEntryNotFoundError, HfHubHTTPError, OSError) as exc:
        if cached is not None:
            return HFResult(path=cached, revision=Path(cached).name, cache_hit=True,
                            seconds=time.monotonic() - t0)
        raise HFError(
            f"Hugging Face model {source!r} is not in the Hugging Face cache ({cache}) and the hub "
            f"cannot be reached ({type(exc).__name__}). Check the network (or HF_ENDPOINT), or "
            f"pull it where the hub is reachable and copy the cache here.") from exc
    return HFResult(path=path, revision=Path(path).name, cache_hit=path == cached,
                    seconds=time.monotonic() - t0)
