"""Messages between Tierserve's deployments: small, typed and serialisable."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

Endpoint = Literal["chat", "completion"]


class RouteRequest(BaseModel):
    """What the router needs to decide; built by the ingress from the HTTP request."""

    model_config = ConfigDict(frozen=True)

    request_id: str
    endpoint: Endpoint
    model: str
    prompt_text: str
    turns: int = 1
    max_tokens: int | None = None
    reasoning_effort: str | None = None
    session_id: str | None = None
    tier_header: str | None = None


class RouteDecision(BaseModel):
    """Where a request goes, and why."""

    model_config = ConfigDict(frozen=True)

    tier: str
    reason: str  # e.g. "rule:code-fence", "score", "model", "header", "affinity", "default"
    score: float | None = None
    threshold: float | None = None
    matched_rules: list[str] = Field(default_factory=list)
    features: dict[str, float] = Field(default_factory=dict)
    affinity_hit: bool = False
    # Tiers to try, in order, if `tier` cannot serve before the first token.
    fallbacks: list[str] = Field(default_factory=list)
    decision_ms: float = 0.0


class TierCall(BaseModel):
    """One generation request for a tier; `body` is the OpenAI request JSON."""

    request_id: str
    endpoint: Endpoint
    body: dict[str, Any]
    # max_tokens for a request that set none: the tier cuts it to the room the prompt leaves.
    default_max_tokens: int | None = None


class TierError(BaseModel):
    """An error from the engine, in OpenAI's shape, yielded instead of chunks."""

    message: str
    type: str
    code: int
    param: str | None = None


class TierFinal(BaseModel):
    """A non-streaming response, already serialised by vLLM."""

    body: dict[str, Any]
