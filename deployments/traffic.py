"""The router's traffic recorder: after each decision (off its path) the shadow scorer's
verdict is logged and the decision's record is queued for the keys database, where
`POST /v1/feedback` labels it and `route-train --from-feedback` reads it."""

from __future__ import annotations

import asyncio
import json
import logging
import time

from app.batching import BatchWriter
from app.config.schema import TierserveConfig
from app.keys.store import resolve_db_url
from app.keys.traffic import RouteRecord, TrafficStore
from app.protocol.internal import RouteDecision, RouteRequest
from app.routing.learning import ShadowScorer, training_features

log = logging.getLogger("ray.serve.tierserve.routing")


class TrafficRecorder:
    MAX_PENDING = 50_000  # beyond this (database down for long) the oldest are dropped
    BATCH = 1000
    PRUNE_EVERY_S = 60.0

    def __init__(self, config: TierserveConfig, shadow: ShadowScorer | None = None) -> None:
        self._config = config
        self._shadow = shadow
        self._store: TrafficStore | None = None
        self._writer = BatchWriter(self._write, interval_s=config.routing.feedback.flush_s,
                                   batch_max=self.BATCH, max_pending=self.MAX_PENDING,
                                   what="decision records", log=log)
        self._tasks: set[asyncio.Task] = set()
        self._last_prune = 0.0

    @staticmethod
    def load_shadow(config: TierserveConfig) -> ShadowScorer | None:
        """The configured shadow artifact, loaded (blocking: call from a thread)."""
        artifact = config.routing.learned.shadow_artifact
        return ShadowScorer(config, artifact) if artifact else None

    def reconfigure(self, config: TierserveConfig, shadow: ShadowScorer | None) -> None:
        self._config, self._shadow = config, shadow
        self._writer.interval_s = config.routing.feedback.flush_s

    @property
    def active(self) -> bool:
        return self._config.routing.feedback.enabled or self._shadow is not None

    def observe(self, req: RouteRequest, decision: RouteDecision) -> None:
        """Called once per decision, after it is returned; never raises."""
        if not self.active:
            return
        task = asyncio.get_running_loop().create_task(self._observe(req, decision))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _record(self, req: RouteRequest, decision: RouteDecision) -> RouteRecord:
        """The record (scoring the shadow, computing features): CPU work, run in a thread."""
        fb, shadow = self._config.routing.feedback, self._shadow
        shadow_score = shadow.score_text(req.prompt_text) if shadow else None
        return RouteRecord(
            request_id=req.request_id, ts=time.time(), team=req.team, tier=decision.tier,
            reason=decision.reason, score=decision.score, scorer_version=decision.scorer_version,
            shadow_score=shadow_score,
            shadow_tier=shadow.tier(shadow_score) if shadow and shadow_score is not None else None,
            shadow_version=shadow.version if shadow else None,
            features=training_features(req.prompt_text) if fb.record_features else None,
            prompt=req.prompt_text if self._config.server.log_prompts else None)

    async def _observe(self, req: RouteRequest, decision: RouteDecision) -> None:
        try:  # CPU work (a shadow score, features) in a thread; a bare record inline
            heavy = self._shadow is not None or self._config.routing.feedback.record_features
            record = (await asyncio.to_thread(self._record, req, decision) if heavy
                      else self._record(req, decision))
        except Exception as exc:  # a broken shadow artifact must not touch serving
            log.warning("decision record failed: %r", exc)
            return
        if record.shadow_version is not None:
            log.info(json.dumps({"event": "route_shadow", "request_id": req.request_id,
                                 "tier": decision.tier, "score": decision.score,
                                 "scorer_version": decision.scorer_version,
                                 "shadow_tier": record.shadow_tier, "shadow_score": record.shadow_score,
                                 "shadow_version": record.shadow_version}))
        if not self._config.routing.feedback.enabled:
            return
        self._writer.add(record)

    def _write(self, batch: list[RouteRecord]) -> None:
        if self._store is None:  # opened (and migrated) on first use, in this thread
            self._store = TrafficStore(resolve_db_url(self._config.server.keys))
        self._store.add_records(batch)
        now = time.monotonic()
        if now - self._last_prune > self.PRUNE_EVERY_S:
            fb = self._config.routing.feedback
            self._store.prune(fb.max_records, fb.max_age_days * 86400)
            self._last_prune = now

    async def flush(self) -> bool:
        """Write the queued records now; False (kept for the next flush) if the write failed."""
        return await self._writer.flush()

    async def close(self, timeout_s: float) -> bool:
        """At replica shutdown: finish the decisions being recorded, write what is queued (bounded)."""
        return await self._writer.close(timeout_s, producers=self._tasks)
