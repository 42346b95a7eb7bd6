"""What a load test does: a named preset, overridable, passed to locust as JSON.

Pure Python (no locust import) so the CLI and the tests can build scenarios
without gevent's monkey-patching.
"""

from __future__ import annotations

import ipaddress
import json
import os
from dataclasses import asdict, dataclass, field, replace
from urllib.parse import urlsplit

ENV_VAR = "TIERSERVE_LOADTEST_SCENARIO"
SHORT_TOKENS, LONG_TOKENS = 64, 256


@dataclass(frozen=True)
class Scenario:
    name: str
    users: int = 4
    duration_s: float = 30
    spawn_rate: float = 100  # users per second; high = all at once
    # Step load: users per step, each held `step_s`; overrides `users`/`duration_s`.
    steps: list[int] = field(default_factory=list)
    step_s: float = 10
    rate_rps: float | None = None  # open-ish loop: total requests/s spread over users
    hard_share: float = 0.0  # share of prompts written to go to the reasoning tier
    max_tokens: int = SHORT_TOKENS
    stream: bool = True
    session_turns: int = 0  # >0: each user holds a conversation of this many turns
    model: str = "auto"
    # Simulated clients, each with its own API key created for the run (loadtests/clients.py);
    # 0: every user sends as one identity (--api-key, or none on an open API).
    clients: int = 0

    @property
    def total_s(self) -> float:
        return len(self.steps) * self.step_s if self.steps else self.duration_s

    def users_at(self, elapsed_s: float) -> int | None:
        """Users wanted `elapsed_s` into the run; None when the run is over."""
        if elapsed_s >= self.total_s:
            return None
        if self.steps:
            return self.steps[min(int(elapsed_s // self.step_s), len(self.steps) - 1)]
        return self.users

    def to_json(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, text: str) -> Scenario:
        return cls(**json.loads(text))

    @classmethod
    def from_env(cls) -> Scenario:
        raw = os.environ.get(ENV_VAR)
        return cls.from_json(raw) if raw else SCENARIOS["mixed"]


SCENARIOS: dict[str, Scenario] = {
    s.name: s for s in (
        Scenario("fixed-rate", users=8, rate_rps=4.0),
        Scenario("ramp", steps=[1, 2, 4, 8, 16], step_s=10),
        Scenario("mixed", users=4, hard_share=0.3),
        Scenario("short", users=4, max_tokens=SHORT_TOKENS),
        Scenario("long", users=4, max_tokens=LONG_TOKENS),
        Scenario("sessions", users=4, session_turns=4, hard_share=0.2),
        Scenario("stream", users=4, hard_share=0.3, stream=True),
    )
}


def scenario(name: str, **overrides: object) -> Scenario:
    if name not in SCENARIOS:
        raise KeyError(f"unknown scenario {name!r}; known: {sorted(SCENARIOS)}")
    return replace(SCENARIOS[name], **{k: v for k, v in overrides.items() if v is not None})


def require_loopback(base_url: str) -> str:
    """Load tests only ever hit this machine; refuse anything else."""
    host = urlsplit(base_url).hostname or ""
    if host != "localhost":
        try:
            if not ipaddress.ip_address(host).is_loopback:
                raise ValueError
        except ValueError:
            raise ValueError(f"refusing non-loopback target {base_url!r}: load tests run against "
                             "127.0.0.1/localhost only") from None
    return base_url.rstrip("/")
