"""Versioned schema migrations (a small migration table, not Alembic: two tables, no ORM).

Each migration runs once, in order, inside one transaction with its version row, so a
database is always at exactly one version. On PostgreSQL an advisory lock serialises
replicas that start together. Never edit a released migration; append a new one.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from sqlalchemy import (
    BigInteger,
    Column,
    Connection,
    Engine,
    Float,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    inspect,
    text,
)
from sqlalchemy.exc import OperationalError

metadata = MetaData()
_ID = BigInteger().with_variant(Integer, "sqlite")  # SQLite autoincrements INTEGER only

api_keys = Table(
    "tierserve_api_keys", metadata,
    Column("id", String(32), primary_key=True),
    Column("key_hash", String(64), nullable=False, unique=True),  # sha256 hex; never the key
    Column("prefix", String(16), nullable=False),
    Column("team", String(64), nullable=False, index=True),
    Column("name", String(128), nullable=False),
    Column("tiers", Text),  # JSON list; NULL: all tiers
    Column("allow_pin", Integer, nullable=False, default=1),
    Column("rpm", Integer), Column("tpm", Integer), Column("max_concurrent", Integer),
    Column("budget_tokens", BigInteger), Column("budget_usd", Float),
    Column("budget_period", String(8)),
    Column("expires_at", Float),
    Column("created_at", Float, nullable=False),
    Column("revoked_at", Float),
    Column("rotated_at", Float),
)

usage_events = Table(
    "tierserve_usage", metadata,
    Column("id", _ID, primary_key=True, autoincrement=True),
    Column("ts", Float, nullable=False),
    Column("key_id", String(32), nullable=False),
    Column("team", String(64), nullable=False),
    Column("tier", String(32), nullable=False),
    Column("endpoint", String(16), nullable=False),
    Column("status", Integer, nullable=False),
    Column("prompt_tokens", Integer, nullable=False),
    Column("completion_tokens", Integer, nullable=False),
    Column("cost_usd", Float, nullable=False),
    Column("strongest_cost_usd", Float, nullable=False),
    Index("ix_tierserve_usage_key_ts", "key_id", "ts"),
    Index("ix_tierserve_usage_team_ts", "team", "ts"),
)

# Learning from traffic: one row per `model: auto` decision (features only when the operator
# allows it), and the labels `POST /v1/feedback` gives them.
route_records = Table(
    "tierserve_route_records", metadata,
    Column("id", _ID, primary_key=True, autoincrement=True),
    Column("request_id", String(128), nullable=False, index=True),
    Column("ts", Float, nullable=False, index=True),
    Column("team", String(64)),
    Column("tier", String(32), nullable=False),
    Column("reason", String(64), nullable=False),
    Column("score", Float),
    Column("scorer_version", String(160)),
    Column("shadow_score", Float),
    Column("shadow_tier", String(32)),
    Column("shadow_version", String(160)),
    Column("features", Text),  # JSON: dense features + mean embedding; NULL unless allowed
    Column("prompt", Text),  # only with server.log_prompts
)

route_feedback = Table(
    "tierserve_route_feedback", metadata,
    Column("id", _ID, primary_key=True, autoincrement=True),
    Column("request_id", String(128), nullable=False, index=True),
    Column("ts", Float, nullable=False),
    Column("outcome", String(16), nullable=False),  # needed_stronger | fine | score
    Column("value", Float),  # the score, for outcome "score"
    Column("team", String(64)),
)

VERSION_TABLE = "tierserve_schema_version"


def _v1(conn: Connection) -> None:
    api_keys.create(conn)
    usage_events.create(conn)


def _v2(conn: Connection) -> None:
    route_records.create(conn)
    route_feedback.create(conn)


MIGRATIONS: list[tuple[int, str, Callable[[Connection], None]]] = [
    (1, "api keys and usage events", _v1),
    (2, "routing decision records and feedback labels", _v2),
]
LATEST = MIGRATIONS[-1][0]


def current_version(conn: Connection) -> int:
    if not inspect(conn).has_table(VERSION_TABLE):
        return 0
    return conn.execute(text(f"SELECT COALESCE(MAX(version), 0) FROM {VERSION_TABLE}")).scalar_one()


def migrate(conn: Connection) -> list[int]:
    """Bring the database to LATEST inside the caller's transaction; returns versions applied."""
    if conn.dialect.name == "postgresql":
        conn.execute(text("SELECT pg_advisory_xact_lock(7419003)"))  # 'tierserve' migrations
    conn.execute(text(f"CREATE TABLE IF NOT EXISTS {VERSION_TABLE} "
                      "(version INTEGER PRIMARY KEY, description TEXT NOT NULL, applied_at FLOAT NOT NULL)"))
    have = current_version(conn)
    applied = []
    for version, description, step in MIGRATIONS:
        if version > have:
            step(conn)
            conn.execute(text(f"INSERT INTO {VERSION_TABLE} VALUES (:v, :d, "
                              "CAST(:t AS FLOAT))"), {"v": version, "d": description, "t": _now()})
            applied.append(version)
    return applied


def migrate_engine(engine: Engine, attempts: int = 6) -> None:
    """`migrate` in a transaction of its own. SQLite has no advisory lock and pysqlite runs
    DDL outside the transaction, so two replicas starting together (the ingress and the
    router) can both create a table: the loser waits, retries and finds the work done."""
    for attempt in range(attempts):
        try:
            with engine.begin() as conn:
                migrate(conn)
            return
        except OperationalError as exc:
            racing = "already exists" in str(exc) or "locked" in str(exc)
            if not racing or attempt == attempts - 1:
                raise
            time.sleep(0.2 * (attempt + 1))


def _now() -> float:
    return time.time()
