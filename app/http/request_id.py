"""Bounded request ids: a client's `x-request-id` is kept only when it is 1–128 printable
ASCII characters; otherwise the request gets a fresh id.

The response's `x-request-id` is Ray Serve's own: its middleware echoes the id it sees (or
one it made) and names Serve's log lines with it. So the bound is applied twice: in Serve's
HTTP servers, ahead of that middleware (`serve_http_middlewares`, which Serve imports from
RAY_SERVE_HTTP_PROXY_CALLBACK_IMPORT_PATH, set by RayServeRuntime.env), and in this app,
which also runs outside Serve (tests, other servers).
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

from starlette.middleware import Middleware

HEADER = b"x-request-id"
_VALID = re.compile(rb"[\x21-\x7e]{1,128}")

Scope = dict[str, Any]
ASGIApp = Callable[[Scope, Any, Any], Awaitable[None]]


def bounded_request_id(presented: bytes | None) -> str:
    if presented is not None and _VALID.fullmatch(presented):
        return presented.decode("ascii")
    return uuid.uuid4().hex


class RequestIdMiddleware:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive, send) -> None:
        if scope["type"] == "http":
            presented = next((v for k, v in scope["headers"] if k.lower() == HEADER), None)
            request_id = bounded_request_id(presented)
            if presented is None or request_id.encode() != presented:
                headers = [(k, v) for k, v in scope["headers"] if k.lower() != HEADER]
                scope = {**scope, "headers": [*headers, (HEADER, request_id.encode())]}
        await self.app(scope, receive, send)


def serve_http_middlewares() -> list[Middleware]:
    """Ray Serve's HTTP callback: middlewares it puts in front of its own request-id one."""
    return [Middleware(RequestIdMiddleware)]
