"""Admission control and error shapes at the ingress (logic only; HTTP is covered e2e)."""

from __future__ import annotations

import json

import pytest
from pydantic import ValidationError

from app.config.schema import RateLimitConfig, ServerConfig
from app.http.errors import OpenAIError, from_validation_error
from app.http.limits import Admission, load_api_keys
from app.protocol.openai import ChatCompletionRequest, CompletionRequest


class Clock:
    def __init__(self) -> None:
        self.t = 0.0

    def __call__(self) -> float:
        return self.t


def test_open_access_without_keys():
    assert Admission(ServerConfig(), frozenset()).authenticate(None) == "anonymous"


@pytest.mark.parametrize("header", [None, "Bearer wrong", "Basic k1", "k1"])
def test_bad_keys_get_401(header):
    adm = Admission(ServerConfig(), frozenset({"k1", "k2"}))
    with pytest.raises(OpenAIError) as err:
        adm.authenticate(header)
    assert err.value.status == 401 and err.value.code == "invalid_api_key"
    assert adm.authenticate("Bearer k2") == "k2"


def test_keys_from_env(monkeypatch):
    monkeypatch.setenv("KEYS", " a, b ,,")
    assert load_api_keys("KEYS") == {"a", "b"}
    monkeypatch.delenv("KEYS")
    assert load_api_keys("KEYS") == frozenset()


def test_rate_limit_per_key_with_retry_after():
    clock = Clock()
    adm = Admission(ServerConfig(rate_limit=RateLimitConfig(requests_per_s=2, burst=2)),
                    frozenset(), clock)
    adm.rate_limit("a")
    adm.rate_limit("a")
    with pytest.raises(OpenAIError) as err:
        adm.rate_limit("a")
    assert err.value.status == 429 and err.value.headers["retry-after"] == "1"
    adm.rate_limit("b")  # other keys have their own bucket
    clock.t = 0.5
    adm.rate_limit("a")  # refilled one token


def test_in_flight_cap_gives_503_with_retry_after():
    adm = Admission(ServerConfig(max_in_flight=2, retry_after_s=3), frozenset())
    adm.enter()
    adm.enter()
    with pytest.raises(OpenAIError) as err:
        adm.enter()
    assert err.value.status == 503 and err.value.headers["retry-after"] == "3"
    adm.leave()
    adm.enter()


def test_validation_error_becomes_400_naming_the_field():
    with pytest.raises(ValidationError) as exc:
        ChatCompletionRequest.model_validate({"model": "auto", "messages": [{"role": "bot"}]})
    err = from_validation_error(exc.value)
    body = json.loads(err.response().body)
    assert err.status == 400
    assert body["error"]["param"] == "messages.0.role"
    assert set(body["error"]) == {"message", "type", "param", "code"}


def test_request_models_expose_routing_view():
    chat = ChatCompletionRequest.model_validate({
        "model": "auto", "max_completion_tokens": 9, "top_k": 5,
        "messages": [{"role": "system", "content": "be brief"},
                     {"role": "user", "content": [{"type": "text", "text": "hi"}]}]})
    assert chat.prompt_text() == "be brief\nhi" and chat.turns() == 1
    assert chat.requested_max_tokens() == 9
    assert chat.model_extra == {"top_k": 5}  # passed through to vLLM
    with pytest.raises(ValidationError):
        CompletionRequest.model_validate({"model": "auto", "prompt": ["a", "b"]})
    with pytest.raises(ValidationError):
        ChatCompletionRequest.model_validate({"model": "auto", "n": 2,
                                              "messages": [{"role": "user", "content": "x"}]})


def test_long_string_content_is_allowed_but_content_parts_are_capped():
    # The parts bound once applied to plain strings too: any message over 128 characters was a 400.
    ChatCompletionRequest.model_validate({"model": "auto", "messages": [
        {"role": "user", "content": "x" * 5000}]})
    with pytest.raises(ValidationError):
        ChatCompletionRequest.model_validate({"model": "auto", "messages": [
            {"role": "user", "content": [{"type": "text", "text": "a"}] * 500}]})
