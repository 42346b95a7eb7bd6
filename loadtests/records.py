"""One line per request, written by the locust users and read by the summary.

Locust's own CSV has percentiles per name but not per concurrency, status or
tier over time; this log has all of that and is plain JSONL.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import IO

RECORDS_ENV = "TIERSERVE_LOADTEST_RECORDS"


@dataclass(frozen=True)
class RequestRecord:
    t: float  # wall-clock seconds when the request started
    users: int  # locust users running at that moment (the concurrency)
    status: int  # HTTP status; 0 = no response (connection error)
    latency_ms: float
    ttft_ms: float | None
    tokens: int
    tier: str | None
    kind: str  # easy | hard (what the prompt was written to be)
    max_tokens: int
    stream: bool
    session_id: str | None = None  # set when the scenario holds conversations
    client: int | None = None  # the simulated client's identity (its key's index), with --clients

    @property
    def ok(self) -> bool:
        return 200 <= self.status < 300


class RecordWriter:
    def __init__(self, stream: IO[str]) -> None:
        self._stream = stream

    def write(self, record: RequestRecord) -> None:
        self._stream.write(json.dumps(asdict(record)) + "\n")
        self._stream.flush()


def read_records(path: Path) -> list[RequestRecord]:
    return list(parse_records(path.read_text().splitlines()))


def parse_records(lines: Iterable[str]) -> Iterable[RequestRecord]:
    for line in lines:
        if line.strip():
            yield RequestRecord(**json.loads(line))
