"""`POST /v1/feedback`: label a routed answer (needed_stronger, fine, or a score) for the
router to learn from. Same key auth and per-caller rate limit as the rest of /v1; a key
sees only its own team's requests. Errors have OpenAI's shape."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

from fastapi import APIRouter, Request
from pydantic import ValidationError

from app.http.body import parse_json_object, read_limited
from app.http.errors import OpenAIError, from_validation_error
from app.keys.enforcer import Principal
from app.keys.traffic import FeedbackAck, FeedbackRequest, RouteRecord, TrafficStore

MAX_BODY_BYTES = 4096


def feedback_router(store: TrafficStore, authenticate: Callable[[str | None], Awaitable[Principal]],
                    rate_limit: Callable[[str], None], wait_for_record_s: float) -> APIRouter:
    """`wait_for_record_s`: how long to wait for a decision record the router has not written
    yet (it writes in batches), before answering 404."""
    router = APIRouter(tags=["feedback"])

    async def find(request_id: str) -> RouteRecord | None:
        deadline = asyncio.get_running_loop().time() + wait_for_record_s
        while True:
            record = await asyncio.to_thread(store.find, request_id)
            if record is not None or asyncio.get_running_loop().time() >= deadline:
                return record
            await asyncio.sleep(0.2)

    @router.post("/v1/feedback", response_model=FeedbackAck,
                 summary="Say whether a routed answer was good enough (trains the router)",
                 openapi_extra={"requestBody": {"required": True, "content": {"application/json": {
                     "schema": FeedbackRequest.model_json_schema()}}}})
    async def feedback(request: Request) -> FeedbackAck:
        principal = await authenticate(request.headers.get("authorization"))
        rate_limit(principal.ident)
        raw = await read_limited(request.stream(), request.headers.get("content-length"), MAX_BODY_BYTES)
        try:
            body = FeedbackRequest.model_validate(parse_json_object(raw))
        except ValidationError as exc:
            raise from_validation_error(exc) from None
        record = await find(body.request_id)
        # Another team's request is as unknown as a missing one: ids are not secrets.
        if record is None or (record.team is not None and principal.key is not None
                              and record.team != principal.key.team):
            raise OpenAIError(404, f"No routed request {body.request_id!r} (only `model: auto` "
                                   "requests are recorded, and only for a while).",
                              code="request_not_found", param="request_id")
        await asyncio.to_thread(store.add_feedback, body.request_id, body.outcome, body.score,
                                principal.key.team if principal.key else None)
        return FeedbackAck(request_id=body.request_id, outcome=body.outcome, score=body.score,
                           tier=record.tier)

    return router
