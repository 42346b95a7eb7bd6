"""Key material: generation, hashing, admin keys. Plaintext keys are never stored or logged."""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
from pathlib import Path

KEY_PREFIX = "tsk-"
PREFIX_CHARS = 12  # 'tsk-' + 8 random characters, shown in listings


def new_key() -> str:
    # 32 random bytes: a plain sha256 is enough; no pepper or slow hash is needed.
    return KEY_PREFIX + secrets.token_urlsafe(32)


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def display_prefix(key: str) -> str:
    return key[:PREFIX_CHARS]


def new_key_id() -> str:
    return "key_" + secrets.token_hex(6)


class AdminKeys:
    """Admin key hashes, from an env var (comma-separated) and/or a file (one per line)."""

    def __init__(self, hashes: frozenset[str]) -> None:
        self._hashes = hashes

    @classmethod
    def from_env(cls, keys_env: str, file_env: str) -> AdminKeys:
        raw = [k for k in os.environ.get(keys_env, "").split(",")]
        path = os.environ.get(file_env)
        if path and Path(path).is_file():
            raw += Path(path).read_text().splitlines()
        return cls(frozenset(hash_key(k.strip()) for k in raw if k.strip()))

    @property
    def enabled(self) -> bool:
        return bool(self._hashes)

    def check(self, presented: str | None) -> bool:
        if not presented:
            return False
        digest = hash_key(presented)
        return any(hmac.compare_digest(digest, h) for h in self._hashes)
