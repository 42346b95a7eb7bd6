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
    traceparent: str | None = None  # W3C trace context of the caller's span (tracing on)
    prompt_text: str
    turns: int = 1
    max_tokens: int | None = None
    reasoning_effort: str | None = None
    session_id: str | None = None
    tier_header: str | None = None
    user: str | None = None  # OpenAI's `user` field, as the client sent it
    team: str | None = None  # the API key's team, when the request carried a key


class PluginContribution(BaseModel):
    """What one routing plugin did for one decision, and how long it took."""

    model_config = ConfigDict(frozen=True)

    plugin: str  # its config name, e.g. "rules", "learned", "health"
    kind: Literal["features", "pin", "scorer", "picker", "filter", "plan"]
    outcome: str  # e.g. "none", "reasoning (rule:code-fence)", "0.3125", "dropped fast"
    value: float | None = None  # a scorer's score
    weight: float | None = None  # a scorer's weight
    ms: float = 0.0

    def brief(self) -> str:
        return f"{self.plugin}={self.outcome}/{self.ms:.2f}ms"


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
    # Ladder boundaries the score was compared with (one for two tiers).
    thresholds: list[float] = Field(default_factory=list)
    # Each plugin's part in this decision, in pipeline order.
    contributions: list[PluginContribution] = Field(default_factory=list)
    # The learned scorer(s) that scored it: artifact name @ sha256 prefix.
    scorer_version: str | None = None

    def explain(self) -> str:
        """One line for the `x-tierserve-route-explain` header."""
        return "; ".join(c.brief() for c in self.contributions)


class TierCall(BaseModel):
    """One generation request for a tier; `body` is the OpenAI request JSON."""

    request_id: str
    endpoint: Endpoint
    body: dict[str, Any]
    # max_tokens for a request that set none: the tier cuts it to the room the prompt leaves.
    default_max_tokens: int | None = None
    traceparent: str | None = None  # W3C trace context of the ingress's dispatch span

    # What Ray's PrefixCacheAffinityRouter reads from a call (`messages` or `prompt`, by
    # attribute): absent (AttributeError) unless the body has it, so it finds the right one.
    @property
    def messages(self) -> Any:
        if "messages" not in self.body:
            raise AttributeError("messages")
        return self.body["messages"]

    @property
    def prompt(self) -> Any:
        if "prompt" not in self.body:
            raise AttributeError("prompt")
        return self.body["prompt"]


class TierError(BaseModel):
    """An error from the engine, in OpenAI's shape, yielded instead of chunks."""

    message: str
    type: str
    code: int
    param: str | None = None


class TierFinal(BaseModel):
    """A non-streaming response, already serialised by vLLM."""

    body: dict[str, Any]
