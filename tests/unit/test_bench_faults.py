"""`tierserve bench faults` bookkeeping: which requests a fault caught, and the table."""

from __future__ import annotations

from loadtests.bench.faults import Outcome, summarise, table


def test_a_hang_catches_every_request_that_overlapped_it() -> None:
    outcomes = [Outcome(0, 1, 200, "ok"), Outcome(1.5, 3, 200, "ok", "router_timeout"),
                Outcome(2.5, 4.5, 200, "ok", "router_timeout"), Outcome(5, 6, 200, "ok")]
    baseline = summarise("none", [Outcome(0, 1, 200, "ok")], None, None)
    row = summarise("hang:redis", outcomes, (2, 4), baseline)
    assert row["caught"] == 2 and row["router_timeouts"] == 2 and row["lost"] == 0
    kill = summarise("kill:fast", outcomes, (2, 2), baseline)
    assert kill["caught"] == 1  # a kill is one instant: only what was in flight then
    text = table([baseline, row])
    assert "| hang:redis | 4 | 4 |" in text and "router timeouts" in text
