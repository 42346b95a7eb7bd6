"""The keys and usage database: SQLite (default, a file in the state dir) or PostgreSQL.

Synchronous (SQLAlchemy Core); the ingress calls it from a thread, never on its loop.
"""

from __future__ import annotations

import builtins
import json
import os
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from sqlalchemy import create_engine, event, func, insert, select, update
from sqlalchemy.engine import Engine

from app.config.loader import REPO_ROOT
from app.config.schema import KeysConfig
from app.keys.migrations import api_keys, migrate_engine, usage_events
from app.keys.models import KeyCreate, KeyCreated, KeyInfo, KeyLimits, UsageEvent, UsageLine
from app.keys.secrets import display_prefix, hash_key, new_key, new_key_id


class KeyNotFound(LookupError):
    pass


def resolve_db_url(cfg: KeysConfig) -> str:
    """The env var's URL, else the default; a relative SQLite path is under the repo root."""
    url = os.environ.get(cfg.db_url_env) or cfg.default_db_url
    if url.startswith("sqlite:///") and not url.startswith("sqlite:////"):
        path = REPO_ROOT / url[len("sqlite:///"):]
        path.parent.mkdir(parents=True, exist_ok=True)
        url = f"sqlite:///{path}"
    return url


def redact_url(url: str) -> str:
    """A DB URL fit for logs: the password replaced."""
    from sqlalchemy.engine import make_url

    return make_url(url).render_as_string(hide_password=True)


def _engine(url: str) -> Engine:
    if url.startswith(("postgresql://", "postgres://")):
        url = "postgresql+psycopg://" + url.split("://", 1)[1]
    if url.startswith("sqlite"):
        engine = create_engine(url, connect_args={"timeout": 10})

        @event.listens_for(engine, "connect")
        def _pragmas(dbapi_conn, _record) -> None:  # WAL: ingress replicas and the CLI share it
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA busy_timeout=10000")
            cur.close()
        return engine
    return create_engine(url, pool_pre_ping=True, pool_size=4, max_overflow=4)


_LIMIT_FIELDS = ("allow_pin", "rpm", "tpm", "max_concurrent", "budget_tokens", "budget_usd",
                 "budget_period", "expires_at")


def _row_to_info(row: Any) -> KeyInfo:
    d = dict(row._mapping)
    d.pop("key_hash", None)
    d["tiers"] = json.loads(d["tiers"]) if d.get("tiers") else None
    d["allow_pin"] = bool(d["allow_pin"])
    return KeyInfo.model_validate(d)


class Database:
    """The keys database (SQLite or PostgreSQL by URL), migrated to the latest schema."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.engine = _engine(url)
        migrate_engine(self.engine)

    def close(self) -> None:
        self.engine.dispose()


class KeyStore(Database):

    # -- keys ---------------------------------------------------------------------
    def create(self, spec: KeyCreate, now: float | None = None) -> KeyCreated:
        key = new_key()
        values = {"id": new_key_id(), "key_hash": hash_key(key), "prefix": display_prefix(key),
                  "team": spec.team, "name": spec.name,
                  "tiers": json.dumps(spec.tiers) if spec.tiers is not None else None,
                  "created_at": now or time.time(),
                  **{f: getattr(spec, f) for f in _LIMIT_FIELDS}}
        values["allow_pin"] = int(spec.allow_pin)
        with self.engine.begin() as conn:
            conn.execute(insert(api_keys).values(**values))
        return KeyCreated(key=key, info=self.get(values["id"]))

    def get(self, ref: str) -> KeyInfo:
        """By id or by display prefix (unique)."""
        with self.engine.connect() as conn:
            rows = conn.execute(select(api_keys).where(
                (api_keys.c.id == ref) | (api_keys.c.prefix == ref))).all()
        if len(rows) != 1:
            raise KeyNotFound(ref)
        return _row_to_info(rows[0])

    def list(self, team: str | None = None, include_revoked: bool = False) -> list[KeyInfo]:
        q = select(api_keys).order_by(api_keys.c.team, api_keys.c.created_at)
        if team:
            q = q.where(api_keys.c.team == team)
        if not include_revoked:
            q = q.where(api_keys.c.revoked_at.is_(None))
        with self.engine.connect() as conn:
            return [_row_to_info(r) for r in conn.execute(q)]

    def lookup(self, key: str) -> KeyInfo | None:
        """The active key whose hash matches, or None (unknown, revoked or rotated away)."""
        with self.engine.connect() as conn:
            row = conn.execute(select(api_keys).where(
                api_keys.c.key_hash == hash_key(key), api_keys.c.revoked_at.is_(None))).first()
        return _row_to_info(row) if row else None

    def count(self) -> int:
        """Keys ever created, revoked ones included (a platform never falls back to open)."""
        with self.engine.connect() as conn:
            return conn.execute(select(func.count()).select_from(api_keys)).scalar_one()

    def revoke(self, ref: str, now: float | None = None) -> KeyInfo:
        info = self.get(ref)
        with self.engine.begin() as conn:
            conn.execute(update(api_keys).where(api_keys.c.id == info.id,
                                                api_keys.c.revoked_at.is_(None))
                         .values(revoked_at=now or time.time()))
        return self.get(info.id)

    def rotate(self, ref: str, now: float | None = None) -> KeyCreated:
        """A new secret for the same key id (limits, budget and usage carry over); the old
        secret stops working at once."""
        info = self.get(ref)
        if not info.active:
            raise KeyNotFound(f"{ref} is revoked")
        key = new_key()
        with self.engine.begin() as conn:
            conn.execute(update(api_keys).where(api_keys.c.id == info.id).values(
                key_hash=hash_key(key), prefix=display_prefix(key), rotated_at=now or time.time()))
        return KeyCreated(key=key, info=self.get(info.id))

    def update_limits(self, ref: str, limits: KeyLimits) -> KeyInfo:
        info = self.get(ref)
        values = {f: getattr(limits, f) for f in _LIMIT_FIELDS}
        values["allow_pin"] = int(limits.allow_pin)
        values["tiers"] = json.dumps(limits.tiers) if limits.tiers is not None else None
        with self.engine.begin() as conn:
            conn.execute(update(api_keys).where(api_keys.c.id == info.id).values(**values))
        return self.get(info.id)

    # -- usage --------------------------------------------------------------------
    def record_usage(self, events: Iterable[UsageEvent]) -> int:
        rows = [e.model_dump() for e in events]
        if rows:
            with self.engine.begin() as conn:
                conn.execute(insert(usage_events), rows)
        return len(rows)

    def spent(self, key_id: str, since: float) -> tuple[int, float]:
        """Tokens and USD a key has used since `since`."""
        u = usage_events.c
        q = select(func.coalesce(func.sum(u.prompt_tokens + u.completion_tokens), 0),
                   func.coalesce(func.sum(u.cost_usd), 0.0)).where(u.key_id == key_id, u.ts >= since)
        with self.engine.connect() as conn:
            tokens, usd = conn.execute(q).one()
        return int(tokens), float(usd)

    def usage(self, team: str | None = None, since: float | None = None) -> builtins.list[UsageLine]:
        u, k = usage_events.c, api_keys.c
        q = (select(u.team, u.key_id, k.name.label("key_name"), u.tier,
                    func.count().label("requests"),
                    func.sum(u.prompt_tokens).label("prompt_tokens"),
                    func.sum(u.completion_tokens).label("completion_tokens"),
                    func.sum(u.cost_usd).label("cost_usd"),
                    func.sum(u.strongest_cost_usd).label("strongest_cost_usd"))
             .select_from(usage_events.outerjoin(api_keys, u.key_id == k.id))
             .group_by(u.team, u.key_id, k.name, u.tier).order_by(u.team, u.key_id, u.tier))
        if team:
            q = q.where(u.team == team)
        if since is not None:
            q = q.where(u.ts >= since)
        with self.engine.connect() as conn:
            return [UsageLine.model_validate(dict(r._mapping)) for r in conn.execute(q)]


def open_store(cfg: KeysConfig) -> KeyStore:
    return KeyStore(resolve_db_url(cfg))


def state_dir() -> Path:
    return REPO_ROOT / ".tierserve"
