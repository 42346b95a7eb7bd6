"""The A/B benchmarks' pass helper (loadtests/bench/sequential.py) against a small SSE server on
loopback: p50s from the streams that worked, the failed ones' statuses, and the failure bar."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from loadtests.bench.sequential import sequential_p50s
from loadtests.bench.stream_client import chat_body


class EveryThirdFails(BaseHTTPRequestHandler):
    calls = 0

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers["content-length"]))
        type(self).calls += 1
        if self.calls % 3 == 0:
            self.send_response(503)
            self.send_header("content-length", "0")
            self.end_headers()
            return
        chunk = {"choices": [{"delta": {"content": "hi"}}]}
        body = f"data: {json.dumps(chunk)}\n\ndata: [DONE]\n\n".encode()
        self.send_response(200)
        self.send_header("content-type", "text/event-stream")
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args) -> None:
        pass


@pytest.fixture
def url():
    EveryThirdFails.calls = 0
    server = ThreadingHTTPServer(("127.0.0.1", 0), EveryThirdFails)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/v1/chat/completions"
    server.shutdown()
    server.server_close()


def test_p50s_come_from_the_streams_that_worked_and_failures_are_listed(url):
    ttft_ms, e2e_ms, failed = sequential_p50s(url, chat_body("m", "hello", 4), 6, min_ok=3)
    assert failed == [503, 503]  # the 3rd and 6th of six sent one after another
    assert 0 < ttft_ms <= e2e_ms < 5000


def test_fewer_than_min_ok_successes_raise(url):
    with pytest.raises(RuntimeError, match=r"2 of 6 requests failed: HTTP \[503, 503\]"):
        sequential_p50s(url, chat_body("m", "hello", 4), 6, min_ok=6)
