"""What the console costs a request when nobody has it open: the ring append per request.

    .venv/bin/python benchmarks/console_ring.py

Times DecisionLog.add with the record the ingress builds (its log line, the router's
decision object, a timestamp), and reading 50 records back (what one console poll pays).
"""

from __future__ import annotations

import sys
import time
import timeit
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from app.console.recorder import DecisionLog  # noqa: E402
from app.protocol.internal import RouteDecision  # noqa: E402

LINE = {"event": "request", "request_id": "0" * 32, "endpoint": "chat", "tier": "fast",
        "reason": "rule:short-prompt", "status": 200, "stream": True, "attempts": 1, "migrated_to": [],
        "prompt_tokens": 10, "completion_tokens": 20, "ttft_ms": 3.0, "latency_ms": 40.0}


def main() -> int:
    log = DecisionLog(200)
    decision = RouteDecision(tier="fast", reason="rule:short-prompt", score=0.2, threshold=0.5)
    n = 200_000
    add = timeit.timeit(lambda: log.add({**LINE, "decision": decision, "at": time.time(),
                                         "model": "auto", "team": None, "trace_id": None}), number=n)
    reads = 200
    read = timeit.timeit(lambda: log.recent(50), number=reads)
    print(f"ring append per request: {add / n * 1e6:.2f} us ({n} appends)")
    print(f"one console poll of 50 decisions: {read / reads * 1e3:.2f} ms (off the data path)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
