"""Request bodies no input can turn into a 5xx (app/http/body.py, app/http/request_id.py)."""

from __future__ import annotations

import asyncio

import pytest

from app.http.body import MAX_DEPTH, parse_json_object, read_limited
from app.http.errors import OpenAIError
from app.http.request_id import bounded_request_id


def _chunks(*parts: bytes):
    async def gen():
        for part in parts:
            yield part
    return gen()


def _error(fn, *args) -> OpenAIError:
    with pytest.raises(OpenAIError) as caught:
        fn(*args)
    return caught.value


@pytest.mark.parametrize("raw, code", [
    (b"[" * 100_000, "invalid_json"),                                    # RecursionError
    (b'{"max_tokens": ' + b"9" * 5000 + b"}", "invalid_json"),           # int digit limit
    (b'{"a": ' + b"[" * (MAX_DEPTH + 1) + b"]" * (MAX_DEPTH + 1) + b"}", "invalid_json"),
    (b'{"messages": [{"role": "user", "content": "\\ud800"}]}', "invalid_unicode"),
    (b"\xff\xfe{}", "invalid_json"),
    (b"[1, 2]", "invalid_json"),
    (b"{", "invalid_json"),
])
def test_hostile_json_is_a_400(raw: bytes, code: str) -> None:
    err = _error(parse_json_object, raw)
    assert (err.status, err.code, err.type) == (400, code, "invalid_request_error")


def test_valid_json_passes_including_surrogate_pairs_and_moderate_nesting() -> None:
    body = parse_json_object(b'{"t": "\\ud83d\\ude00", "n": ' + b"[" * 10 + b"]" * 10 + b"}")
    assert body["t"] == "\U0001F600"


def test_the_size_limit_holds_while_reading_without_content_length() -> None:
    with pytest.raises(OpenAIError) as caught:
        asyncio.run(read_limited(_chunks(b"x" * 600, b"x" * 600), None, 1000))
    assert caught.value.status == 413
    assert asyncio.run(read_limited(_chunks(b"a", b"b"), None, 1000)) == b"ab"
    with pytest.raises(OpenAIError):
        asyncio.run(read_limited(_chunks(b"a"), "5000", 1000))  # declared too large


@pytest.mark.parametrize("presented, kept", [
    (b"abc-123", True), (b"x" * 128, True), (b"x" * 129, False), (b"", False),
    (b"has space", False), (b"\xc3\xa9t\xc3\xa9", False), (None, False),
])
def test_request_ids_are_bounded(presented: bytes | None, kept: bool) -> None:
    rid = bounded_request_id(presented)
    assert (rid == (presented or b"").decode("latin-1")) is kept
    assert 1 <= len(rid) <= 128 and rid.isascii() and rid.isprintable()
