"""OpenAI-compatible request models and the error envelope.

The ingress validates only what Tierserve needs to route and limit; every
other field passes through to vLLM, which validates it against the model.
"""

from __future__ import annotations

import json
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

# Bounds on what one request may carry (OpenAI's documented limits where it has them:
# 4 stop sequences, 128 tools, 300 logit_bias entries), so no input is unbounded work.
MAX_MESSAGES = 2048
MAX_CONTENT_PARTS = 128
MAX_STOP = 4
MAX_STOP_CHARS = 512
MAX_LOGIT_BIAS = 300
MAX_TOOLS = 128
MAX_TOOLS_JSON_BYTES = 256_000

# vLLM's additions to OpenAI's request that change cost or scheduling for everyone on a
# shared engine; each passes only when server.allowed_vllm_extensions names it.
VLLM_EXTENSIONS = frozenset({
    "ignore_eos", "min_tokens", "priority", "vllm_xargs", "kv_transfer_params", "cache_salt",
    "prompt_logprobs", "truncate_prompt_tokens", "return_tokens_as_token_ids", "return_token_ids",
    "add_generation_prompt", "continue_final_message", "chat_template", "chat_template_kwargs",
    "mm_processor_kwargs", "structured_outputs", "guided_json", "guided_regex", "guided_choice",
    "guided_grammar", "logits_processors", "allowed_token_ids", "bad_words",
})


class ContentPart(BaseModel):
    model_config = ConfigDict(extra="allow")
    type: str
    text: str | None = None


class ChatMessage(BaseModel):
    model_config = ConfigDict(extra="allow")
    role: Literal["system", "developer", "user", "assistant", "tool"]
    # The bound is on the number of parts; on the union it also capped a plain string at
    # MAX_CONTENT_PARTS characters.
    content: str | Annotated[list[ContentPart], Field(max_length=MAX_CONTENT_PARTS)] | None = None

    def text(self) -> str:
        if isinstance(self.content, str):
            return self.content
        return "\n".join(p.text or "" for p in self.content or [])


class StreamOptions(BaseModel):
    model_config = ConfigDict(extra="allow")
    include_usage: bool = False


class _GenerationParams(BaseModel):
    """Fields shared by chat and completions."""

    model_config = ConfigDict(extra="allow")

    model: str = Field(min_length=1)
    stream: bool = False
    stream_options: StreamOptions | None = None
    max_tokens: int | None = Field(None, ge=1)
    temperature: float | None = Field(None, ge=0, le=2)
    top_p: float | None = Field(None, gt=0, le=1)
    n: int = Field(1, ge=1, le=1)  # several choices per request: not supported
    user: str | None = Field(None, max_length=256)
    stop: str | list[str] | None = Field(None, max_length=MAX_STOP)
    logit_bias: dict[str, float] | None = Field(None, max_length=MAX_LOGIT_BIAS)

    @field_validator("stop")
    @classmethod
    def _short_stops(cls, v: str | list[str] | None) -> str | list[str] | None:
        if any(len(s) > MAX_STOP_CHARS for s in ([v] if isinstance(v, str) else v or [])):
            raise ValueError(f"each stop sequence must be at most {MAX_STOP_CHARS} characters")
        return v

    def vllm_extensions(self) -> list[str]:
        """The vLLM-only fields this request sets."""
        return sorted(k for k in (self.model_extra or {}) if k in VLLM_EXTENSIONS)


class ChatCompletionRequest(_GenerationParams):
    messages: list[ChatMessage] = Field(min_length=1, max_length=MAX_MESSAGES)
    tools: list[dict[str, Any]] | None = Field(None, max_length=MAX_TOOLS)

    @field_validator("tools")
    @classmethod
    def _small_tools(cls, v: list[dict[str, Any]] | None) -> list[dict[str, Any]] | None:
        if v and len(json.dumps(v)) > MAX_TOOLS_JSON_BYTES:
            raise ValueError(f"tool definitions must total at most {MAX_TOOLS_JSON_BYTES} bytes")
        return v
    max_completion_tokens: int | None = Field(None, ge=1)
    reasoning_effort: Literal["minimal", "low", "medium", "high"] | None = None

    def requested_max_tokens(self) -> int | None:
        return self.max_completion_tokens or self.max_tokens

    def prompt_text(self) -> str:
        return "\n".join(m.text() for m in self.messages)

    def turns(self) -> int:
        return sum(1 for m in self.messages if m.role == "user")


class CompletionRequest(_GenerationParams):
    prompt: str | list[str]

    @field_validator("prompt")
    @classmethod
    def _one_prompt(cls, v: str | list[str]) -> str | list[str]:
        if isinstance(v, list) and len(v) != 1:
            raise ValueError("exactly one prompt per request is supported")
        return v

    def requested_max_tokens(self) -> int | None:
        return self.max_tokens

    def prompt_text(self) -> str:
        return self.prompt if isinstance(self.prompt, str) else self.prompt[0]

    def turns(self) -> int:
        return 1


GenerationRequest = ChatCompletionRequest | CompletionRequest


class ErrorBody(BaseModel):
    message: str
    type: str
    param: str | None = None
    code: str | int | None = None


class ErrorEnvelope(BaseModel):
    error: ErrorBody


class ModelCard(BaseModel):
    id: str
    object: Literal["model"] = "model"
    created: int = 0
    owned_by: str = "tierserve"
    # Tierserve's own additions, so clients can see the tier behind a name.
    tier: str | None = None
    max_model_len: int | None = None


class ModelList(BaseModel):
    object: Literal["list"] = "list"
    data: list[ModelCard]


def error_payload(message: str, type_: str, code: str | int | None = None,
                  param: str | None = None) -> dict[str, Any]:
    return ErrorEnvelope(error=ErrorBody(message=message, type=type_, param=param,
                                         code=code)).model_dump()
