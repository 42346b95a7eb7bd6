"""Reading a JSON request body that no input can turn into a 5xx.

The size limit holds while reading (a body without Content-Length is not read whole
first); JSON that Python cannot represent (nesting past the recursion limit, integers
past 4,300 digits) or cannot send on (lone UTF-16 surrogates, which are not UTF-8) is a
400, as is nesting deeper than MAX_DEPTH, which would cost every later hop.
"""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator
from typing import Any

from app.http.errors import OpenAIError

MAX_DEPTH = 64
_LONE_SURROGATE_HINT = re.compile(rb"\\u[dD][89a-fA-F]")


async def read_limited(chunks: AsyncIterator[bytes], declared: str | None, limit: int) -> bytes:
    """The body, or 413 as soon as it (or its Content-Length) passes `limit`."""
    if declared and declared.isdigit() and int(declared) > limit:
        raise _too_large(limit)
    raw = bytearray()
    async for chunk in chunks:
        raw += chunk
        if len(raw) > limit:
            raise _too_large(limit)
    return bytes(raw)


def parse_json_object(raw: bytes) -> dict[str, Any]:
    try:
        body = json.loads(raw)
    except RecursionError:
        raise _invalid(f"Request body nests deeper than {MAX_DEPTH} levels.") from None
    except ValueError as exc:  # JSONDecodeError, UnicodeDecodeError, int digit limit
        raise _invalid(f"Request body is not valid JSON: {exc}") from None
    if not isinstance(body, dict):
        raise _invalid("Request body must be a JSON object.")
    if raw.count(b"[") + raw.count(b"{") > MAX_DEPTH and _depth(body) > MAX_DEPTH:
        raise _invalid(f"Request body nests deeper than {MAX_DEPTH} levels.")
    if _LONE_SURROGATE_HINT.search(raw) and _has_lone_surrogate(body):
        raise OpenAIError(400, "Request body contains a lone UTF-16 surrogate (e.g. \\ud800), "
                               "which is not valid Unicode text.", code="invalid_unicode")
    return body


def _depth(value: Any) -> int:
    """Nesting depth, iteratively (the point is not to recurse on hostile input)."""
    deepest, stack = 0, [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, (dict, list)):
            deepest = max(deepest, depth)
            if depth > MAX_DEPTH:
                return depth
            children = item.values() if isinstance(item, dict) else item
            stack.extend((child, depth + 1) for child in children)
    return deepest


def _has_lone_surrogate(body: dict[str, Any]) -> bool:
    try:
        json.dumps(body, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


def _too_large(limit: int) -> OpenAIError:
    return OpenAIError(413, f"Request body exceeds {limit} bytes.", code="request_too_large")


def _invalid(message: str) -> OpenAIError:
    return OpenAIError(400, message, code="invalid_json")
