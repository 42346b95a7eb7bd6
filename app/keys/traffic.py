"""Learning from traffic, in the keys database: decision records and their feedback labels.

The router writes one record per `model: auto` decision (batched, from a thread); `POST
/v1/feedback` adds labels; `route-train --from-feedback` and `route-eval --shadow` read
them. Retention is bounded by count and age. Synchronous SQLAlchemy Core, like the store.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator
from sqlalchemy import delete, func, insert, select

from app.keys.migrations import route_feedback, route_records
from app.keys.store import Database

Outcome = Literal["needed_stronger", "fine", "score"]


class RouteRecord(BaseModel):
    """One routing decision as stored (features: JSON-decoded, or None)."""

    model_config = ConfigDict(extra="ignore")

    request_id: str
    ts: float
    team: str | None = None
    tier: str
    reason: str
    score: float | None = None
    scorer_version: str | None = None
    shadow_score: float | None = None
    shadow_tier: str | None = None
    shadow_version: str | None = None
    features: dict[str, Any] | None = None
    prompt: str | None = None


class FeedbackRequest(BaseModel):
    """`POST /v1/feedback`: how a served answer was, for the router to learn from."""

    model_config = ConfigDict(extra="forbid")

    request_id: str = Field(min_length=1, max_length=128,
                            description="the x-request-id of the answer this is about")
    outcome: Outcome = Field(description="needed_stronger: the answer was not good enough; "
                                         "fine: it was; score: see `score`")
    score: float | None = Field(None, ge=0, le=1,
                                description="with outcome `score`: the answer's quality, 0 to 1")

    @model_validator(mode="after")
    def _score_given(self) -> FeedbackRequest:
        if (self.outcome == "score") != (self.score is not None):
            raise ValueError("`score` is required with outcome 'score' and allowed only with it")
        return self


class FeedbackAck(BaseModel):
    object: Literal["feedback"] = "feedback"
    request_id: str
    outcome: Outcome
    score: float | None = None
    tier: str  # the tier that served the request (as routed)


class Labelled(BaseModel):
    """A record with its latest label."""

    record: RouteRecord
    outcome: Outcome
    value: float | None = None


class TrafficStore(Database):
    """Decision records and feedback labels, in the keys database."""

    def add_records(self, records: Iterable[RouteRecord]) -> int:
        rows = [{**r.model_dump(exclude={"features"}),
                 "features": json.dumps(r.features, separators=(",", ":")) if r.features else None}
                for r in records]
        if rows:
            with self.engine.begin() as conn:
                conn.execute(insert(route_records), rows)
        return len(rows)

    def find(self, request_id: str) -> RouteRecord | None:
        """The latest record of a request id (a client may reuse ids)."""
        c = route_records.c
        with self.engine.connect() as conn:
            row = conn.execute(select(route_records).where(c.request_id == request_id)
                               .order_by(c.id.desc()).limit(1)).first()
        return _record(row) if row else None

    def add_feedback(self, request_id: str, outcome: Outcome, value: float | None,
                     team: str | None, now: float | None = None) -> None:
        with self.engine.begin() as conn:
            conn.execute(insert(route_feedback).values(
                request_id=request_id, ts=now or time.time(), outcome=outcome, value=value, team=team))

    def recent(self, limit: int = 10_000, since: float | None = None) -> list[RouteRecord]:
        """The newest records, oldest first."""
        c = route_records.c
        q = select(route_records).order_by(c.id.desc()).limit(limit)
        if since is not None:
            q = q.where(c.ts >= since)
        with self.engine.connect() as conn:
            return [_record(r) for r in reversed(conn.execute(q).all())]

    def labelled(self, since: float | None = None) -> list[Labelled]:
        """Each labelled request's latest record with its latest label, oldest first."""
        f, c = route_feedback.c, route_records.c
        last_fb = select(func.max(f.id)).group_by(f.request_id).scalar_subquery()
        last_rec = select(func.max(c.id)).group_by(c.request_id).scalar_subquery()
        q = (select(route_records, f.outcome, f.value)
             .join(route_feedback, f.request_id == c.request_id)
             .where(f.id.in_(last_fb), c.id.in_(last_rec)).order_by(c.id))
        if since is not None:
            q = q.where(c.ts >= since)
        with self.engine.connect() as conn:
            return [Labelled(record=_record(r), outcome=r.outcome, value=r.value)
                    for r in conn.execute(q)]

    def prune(self, max_records: int, max_age_s: float, now: float | None = None) -> int:
        """Drop records (and labels) older than `max_age_s` or beyond the newest `max_records`."""
        cutoff = (now or time.time()) - max_age_s
        c, f = route_records.c, route_feedback.c
        with self.engine.begin() as conn:
            newest = conn.execute(select(func.max(c.id))).scalar_one() or 0
            gone = conn.execute(delete(route_records).where(
                (c.ts < cutoff) | (c.id <= newest - max_records))).rowcount
            conn.execute(delete(route_feedback).where(
                f.ts < cutoff, ~f.request_id.in_(select(c.request_id))))
        return int(gone or 0)


def _record(row: Any) -> RouteRecord:
    d = dict(row._mapping)
    d["features"] = json.loads(d["features"]) if d.get("features") else None
    return RouteRecord.model_validate(d)
