"""Simulated clients for the load generators: one API key per client.

The ingress limits each caller to `server.rate_limit` (50 req/s per key; every caller of an
open, keyless API is the same 'anonymous' one). A load test whose users all share one
identity measures that limit, not capacity: its 429s are the limit's. Real multi-team load
comes from many keys, so the load generators can create keys for the run, through the keys
store (what `tierserve keys create` does) or the admin API (`POST /admin/keys`), give each
running user its own, and revoke them at the end.

A key created on an open API closes it: from then on it requires a key (keys are never
un-created; revoked ones count). Use it against a stack whose API has keys, or one of its own.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator, Mapping
from typing import Any, Protocol

KEYS_ENV = "TIERSERVE_LOADTEST_KEYS"  # comma-separated keys for the locust users
TEAM = "loadtest"


class ClientPool:
    """Deals identities (indexes into a list of keys) to simulated clients as they start and
    takes them back as they stop: each new client gets the identity the fewest running clients
    hold, lowest index first. With at least as many identities as running clients none is
    shared, however clients come and go (a locust ramp stops and starts users)."""

    def __init__(self, size: int) -> None:
        if size < 1:
            raise ValueError("a client pool needs at least one identity")
        self._holders = [0] * size

    def acquire(self) -> int:
        index = min(range(len(self._holders)), key=lambda i: (self._holders[i], i))
        self._holders[index] += 1
        return index

    def release(self, index: int) -> None:
        if self._holders[index] <= 0:
            raise ValueError(f"identity {index} is not held")
        self._holders[index] -= 1

    @property
    def holders(self) -> list[int]:
        return list(self._holders)


def keys_from_env(env: Mapping[str, str] = os.environ) -> list[str]:
    return [k for k in (env.get(KEYS_ENV) or "").split(",") if k]


def bearer(key: str | None) -> dict[str, str]:
    return {"authorization": f"Bearer {key}"} if key else {}


class KeyIssuer(Protocol):
    """Creates and revokes keys: app.keys.store.KeyStore, or AdminApi below."""

    def create(self, spec: Any) -> Any: ...  # KeyCreate -> KeyCreated

    def revoke(self, ref: str) -> Any: ...


class AdminApi:
    """The keys admin API of a running Tierserve (`/admin/keys`, with an admin key)."""

    def __init__(self, base_url: str, admin_key: str) -> None:
        self._base, self._headers = base_url.rstrip("/"), bearer(admin_key)

    def create(self, spec: Any) -> Any:
        import httpx

        from app.keys.models import KeyCreated

        r = httpx.post(f"{self._base}/admin/keys", json=spec.model_dump(exclude_none=True),
                       headers=self._headers, timeout=30, trust_env=False)
        r.raise_for_status()
        return KeyCreated.model_validate(r.json())

    def revoke(self, ref: str) -> None:
        import httpx

        httpx.delete(f"{self._base}/admin/keys/{ref}", headers=self._headers, timeout=30,
                     trust_env=False).raise_for_status()


@contextlib.contextmanager
def client_keys(issuer: KeyIssuer, n: int, run: str) -> Iterator[list[str]]:
    """`n` keys of team `loadtest` named `<run>-client-<i>` (no per-key limits: the
    server-wide per-caller limit applies to each), revoked when the block ends."""
    from app.keys.models import KeyCreate

    created = []
    try:
        for i in range(n):
            created.append(issuer.create(KeyCreate(team=TEAM, name=f"{run}-client-{i}")))
        yield [c.key for c in created]
    finally:
        for c in created:
            with contextlib.suppress(Exception):  # best effort: the stack may be gone
                issuer.revoke(c.info.id)
