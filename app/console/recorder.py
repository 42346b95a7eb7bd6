"""What the console shows about recent requests: a bounded ring of decision records and
cumulative counts per tier and reason, kept by each ingress replica.

The cost on the data path is one small dict and a deque append per finished request (no
I/O, no lock: Serve runs the ingress's handlers on one event loop). Prompt text is kept only
when the server logs prompts (`server.log_prompts`).
"""

from __future__ import annotations

import time
from collections import Counter, deque
from typing import Any

from pydantic import BaseModel, Field

# Decision fields the console shows in their own columns; any other field the router adds
# (per-plugin contributions and timings, for instance) is shown as it comes.
_SHOWN = {"tier", "reason", "score", "threshold", "thresholds", "matched_rules", "fallbacks",
          "decision_ms", "affinity_hit"}


class DecisionRecord(BaseModel):
    """One finished request, as the console lists it."""

    request_id: str
    at: float  # epoch seconds
    endpoint: str
    model: str | None = None
    tier: str
    reason: str
    status: int
    score: float | None = None
    threshold: float | None = None
    thresholds: list[float] = Field(default_factory=list)  # the ladder's, one per boundary
    matched_rules: list[str] = Field(default_factory=list)
    decision_ms: float | None = None
    details: dict[str, Any] = Field(default_factory=dict)  # the router's other fields
    ttft_ms: float | None = None
    latency_ms: float
    prompt_tokens: int = 0
    completion_tokens: int = 0
    stream: bool = False
    attempts: int = 0
    migrated_to: list[str] = Field(default_factory=list)
    team: str | None = None
    trace_id: str | None = None
    prompt: str | None = None


def decision_fields(decision: Any) -> dict[str, Any]:
    """The router decision's fields for a record: shown ones by name, the rest in `details`."""
    if decision is None:
        return {}
    data = decision.model_dump() if hasattr(decision, "model_dump") else dict(decision)
    out = {k: data[k] for k in ("score", "threshold", "thresholds", "matched_rules", "decision_ms")
           if k in data}
    details = {k: v for k, v in data.items() if k not in _SHOWN and v not in (None, [], {}, False)}
    if details:
        out["details"] = details
    return out


class DecisionLog:
    """The last `size` records and, since this replica started, counts per tier and reason."""

    def __init__(self, size: int) -> None:
        self._ring: deque[dict[str, Any]] = deque(maxlen=max(size, 1))
        self.enabled = size > 0
        self.by_tier: Counter[str] = Counter()
        self.by_reason: Counter[tuple[str, str]] = Counter()
        self.started = time.time()

    def add(self, record: dict[str, Any]) -> None:
        """`record`: a DecisionRecord's fields, the router's decision object under "decision"
        (expanded and validated only when read, off the data path)."""
        if not self.enabled:
            return
        self._ring.append(record)
        if record.get("status", 200) < 400:
            tier = record["tier"]
            self.by_tier[tier] += 1
            self.by_reason[(tier, record["reason"].split(":", 1)[0])] += 1

    def recent(self, limit: int = 100) -> list[DecisionRecord]:
        items = list(self._ring)[-limit:]
        return [DecisionRecord.model_validate({**r, **decision_fields(r.get("decision"))})
                for r in reversed(items)]

    def shares(self) -> dict[str, Any]:
        """Served requests per tier (cumulative) with their share, and per reason kind; plus
        the share over the records in the ring (the recent window)."""
        total = sum(self.by_tier.values())
        window = [r for r in self._ring if r.get("status", 200) < 400]
        recent: Counter[str] = Counter(r["tier"] for r in window)
        return {
            "since": self.started,
            "total": total,
            "tiers": {t: {"requests": n, "share": n / total} for t, n in sorted(self.by_tier.items())},
            "reasons": [{"tier": t, "reason": r, "requests": n}
                        for (t, r), n in sorted(self.by_reason.items())],
            "recent_window": len(window),
            "recent": {t: n / len(window) for t, n in sorted(recent.items())} if window else {},
        }
