"""Small builders shared by the routing tests."""

from __future__ import annotations

from typing import Any

from app.config.schema import TierserveConfig
from app.protocol.internal import RouteRequest


class FixedScorer:
    """A ComplexityScorer whose score the test sets."""

    def __init__(self, value: float) -> None:
        self.value = value

    def score(self, features) -> float:
        return self.value


def two_tier_config(**routing: Any) -> TierserveConfig:
    tier = {"model_source": "m", "max_model_len": 4096}
    return TierserveConfig.model_validate({
        "profile": "test",
        "tiers": [{"name": "fast", "served_model_name": "tiny-fast", **tier},
                  {"name": "reasoning", "served_model_name": "tiny-reasoning", **tier}],
        "routing": {"default_tier": "fast", "weak_tier": "fast", "strong_tier": "reasoning",
                    "threshold": 0.5, **routing},
    })


def request(prompt: str = "What is the capital of France, and why did it become the capital?",
            **kw: Any) -> RouteRequest:
    return RouteRequest(**{"request_id": "r1", "endpoint": "chat", "model": "auto",
                           "prompt_text": prompt, **kw})
