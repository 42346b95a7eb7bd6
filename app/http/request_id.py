"""Bounded request ids: a client's `x-request-id` is kept only when it is 1–128 printable
ASCII characters; otherwise the request gets a fresh id. The response always carries the
id the request was logged under."""

from __future__ import annotations

import re
import uuid
from typing import Any, Awaitable, Callable

HEADER = b"x-request-id"
_VALID = re.compile(rb"[\x21-\x7e]{1,128}")

Scope = dict[str, Any]
Message = dict[str, Any]
ASGIApp = Callable[[Scope, Callable[[], Awaitable[Message]], Callable[[Message], Awaitable[None]]],
                   Awaitable[None]]


def bounded_request_id(presented: bytes | None) -> str:
    if presented is not None and _VALID.fullmatch(presented):
        return presented.decode("ascii")
    return uuid.uuid4().hex


class RequestIdMiddleware:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive, send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = [(k, v) for k, v in scope["headers"] if k.lower() != HEADER]
        presented = next((v for k, v in scope["headers"] if k.lower() == HEADER), None)
        request_id = bounded_request_id(presented)
        scope = {**scope, "headers": [*headers, (HEADER, request_id.encode())]}

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                out = [(k, v) for k, v in message.get("headers", []) if k.lower() != HEADER]
                message = {**message, "headers": [*out, (HEADER, request_id.encode())]}
            await send(message)

        await self.app(scope, receive, send_with_id)
