"""Typed records at the keys boundary: what the store holds and the admin API returns."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

Period = Literal["day", "month"]


class KeyLimits(BaseModel):
    """What one key may do. None means unlimited / every tier."""

    model_config = ConfigDict(extra="forbid")

    tiers: list[str] | None = Field(None, description="tiers the key may use; null: all")
    allow_pin: bool = Field(True, description="may choose its tier (model, x-tierserve-tier, "
                                              "forced rules such as reasoning_effort)")
    rpm: int | None = Field(None, gt=0, description="requests per minute")
    tpm: int | None = Field(None, gt=0, description="tokens per minute (prompt + completion)")
    max_concurrent: int | None = Field(None, gt=0)
    budget_tokens: int | None = Field(None, gt=0, description="tokens per budget period")
    budget_usd: float | None = Field(None, gt=0, description="USD per budget period")
    budget_period: Period | None = None
    expires_at: float | None = Field(None, description="epoch seconds; null: never")

    @model_validator(mode="after")
    def _budget(self) -> KeyLimits:
        has_budget = self.budget_tokens is not None or self.budget_usd is not None
        if has_budget and self.budget_period is None:
            raise ValueError("a budget needs budget_period (day or month)")
        if self.budget_tokens is not None and self.budget_usd is not None:
            raise ValueError("set budget_tokens or budget_usd, not both")
        return self


class KeyCreate(KeyLimits):
    team: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.-]+$")
    name: str = Field(min_length=1, max_length=128)


class KeyInfo(KeyLimits):
    """A key as stored, without its secret (only a hash is stored)."""

    model_config = ConfigDict(extra="ignore")

    id: str
    prefix: str = Field(description="first characters of the key, for recognising it")
    team: str
    name: str
    created_at: float
    revoked_at: float | None = None
    rotated_at: float | None = None

    @property
    def active(self) -> bool:
        return self.revoked_at is None


class KeyCreated(BaseModel):
    """Returned once, at creation or rotation: the only time the key is shown."""

    key: str
    info: KeyInfo


class UsageEvent(BaseModel):
    ts: float
    key_id: str
    team: str
    tier: str
    endpoint: str
    status: int
    prompt_tokens: int
    completion_tokens: int
    cost_usd: float
    strongest_cost_usd: float  # the same tokens on the strongest tier


class UsageLine(BaseModel):
    team: str
    key_id: str
    key_name: str | None = None
    tier: str
    requests: int
    prompt_tokens: int
    completion_tokens: int
    cost_usd: float
    strongest_cost_usd: float


class TeamTotal(BaseModel):
    team: str
    requests: int
    tokens: int
    cost_usd: float
    strongest_cost_usd: float
    savings_usd: float = Field(description="strongest_cost_usd - cost_usd: what routing saved")
    savings_pct: float


class UsageReport(BaseModel):
    since: float | None
    strongest_tier: str
    lines: list[UsageLine]
    teams: list[TeamTotal]
