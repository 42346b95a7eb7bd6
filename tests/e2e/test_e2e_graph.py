"""End to end: real Ray Serve, real vLLM on the CPU, the tiny models, over HTTP."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import httpx
import openai
import pytest

from tests.conftest import chat_prompt_tokens, sse_events

pytestmark = pytest.mark.e2e

HARD = ("Prove step by step that the square root of 2 is irrational. " * 3).strip()


def test_deployed_through_serve_deploy_cli_is_running(tierserve_stack):
    assert "Sent deploy request successfully" in tierserve_stack.deploy_output
    status = subprocess.run(
        [str(Path(sys.executable).with_name("serve")), "status", "--address",
         tierserve_stack.dashboard_url], capture_output=True, text=True, timeout=60)
    assert status.returncode == 0, status.stderr
    assert "status: RUNNING" in status.stdout
    for name in ("ingress", "router", "tier-fast", "tier-reasoning"):
        assert name in status.stdout


def test_configured_serve_data_path_is_live(tierserve_stack):
    """configs/server.yaml ray_serve reaches the cluster: HAProxy owns the Serve HTTP port
    and the replicas run at the configured niceness."""
    import psutil

    from app.config import load_config
    from tooling.local_cluster import LocalStack, stack_processes

    runtime = load_config("local-cpu").server.ray_serve
    assert runtime.haproxy, "this test covers the shipped HAProxy mode"
    port = int(tierserve_stack.base_url.rsplit(":", 1)[1])
    listeners = {c.pid for c in psutil.net_connections("tcp")
                 if c.status == psutil.CONN_LISTEN and c.laddr.port == port}
    assert listeners and {psutil.Process(pid).name() for pid in listeners} == {"haproxy"}
    ours = stack_processes(LocalStack(temp_dir=str(tierserve_stack.log_dir.parents[2])))
    replicas = [p for p in ours if "ServeReplica:tierserve:" in " ".join(p.cmdline())]
    assert len(replicas) >= 4
    assert {p.nice() for p in replicas} == {runtime.worker_niceness}


def test_health_and_readiness(tierserve_stack):
    assert httpx.get(f"{tierserve_stack.base_url}/healthz").json() == {"status": "alive"}
    ready = httpx.get(f"{tierserve_stack.base_url}/readyz")
    assert ready.status_code == 200
    assert ready.json()["tiers"] == {"fast": "ready", "reasoning": "ready"}
    assert ready.json()["router"] == "ready"


def test_models_lists_auto_and_each_tier(openai_client):
    ids = {m.id for m in openai_client.models.list().data}
    assert ids == {"auto", "tiny-fast", "tiny-reasoning"}


def test_chat_non_streaming_usage_matches_tokenizer(openai_client, tiny_tokenizers):
    messages = [{"role": "user", "content": "Hello there, how are you?"}]
    raw = openai_client.chat.completions.with_raw_response.create(
        model="tiny-fast", messages=messages, max_tokens=7, temperature=0,
        extra_body={"ignore_eos": True})  # random weights may emit EOS early
    resp = raw.parse()
    assert raw.headers["x-tierserve-tier"] == "fast"
    assert raw.headers["x-tierserve-route-reason"] == "model"
    assert raw.headers["x-request-id"]
    assert resp.usage.prompt_tokens == chat_prompt_tokens(tiny_tokenizers["fast"], messages)
    assert resp.usage.completion_tokens == 7
    assert resp.choices[0].finish_reason == "length"


def test_chat_streaming_with_usage(openai_client, tiny_tokenizers):
    messages = [{"role": "user", "content": "Hi!"}]
    stream = openai_client.chat.completions.create(
        model="auto", messages=messages, max_tokens=12, stream=True,
        stream_options={"include_usage": True}, extra_body={"ignore_eos": True})
    chunks = list(stream)
    deltas = [c for c in chunks if c.choices]
    usage = [c.usage for c in chunks if c.usage]
    assert len(usage) == 1 and usage[0].completion_tokens == 12
    assert usage[0].prompt_tokens == chat_prompt_tokens(tiny_tokenizers["fast"], messages)
    # A role chunk, then deltas; vLLM may fold a token's partial UTF-8 bytes into the next one.
    assert deltas[0].choices[0].delta.role == "assistant"
    assert 2 <= len(deltas) <= 1 + 12
    assert deltas[-1].choices[0].finish_reason == "length"


def test_stream_without_usage_option_has_no_usage_chunk(tierserve_stack):
    body = {"model": "auto", "stream": True, "max_tokens": 4,
            "messages": [{"role": "user", "content": "Hey"}]}
    resp = httpx.post(f"{tierserve_stack.base_url}/v1/chat/completions", json=body, timeout=60)
    assert resp.status_code == 200
    assert resp.headers["content-type"].startswith("text/event-stream")
    events = sse_events(resp.content)
    assert events[-1] == "[DONE]"
    assert all("usage" not in e for e in events[:-1] if isinstance(e, dict))


def test_completions_endpoint(openai_client, tiny_tokenizers):
    resp = openai_client.completions.create(model="tiny-reasoning", prompt="Once upon a time",
                                            max_tokens=5, extra_body={"ignore_eos": True})
    assert resp.usage.completion_tokens == 5
    tok = tiny_tokenizers["reasoning"]
    assert resp.usage.prompt_tokens == len(tok.encode("Once upon a time", add_special_tokens=False))
    streamed = list(openai_client.completions.create(model="auto", prompt="Hi", max_tokens=3,
                                                     stream=True, extra_body={"ignore_eos": True}))
    with_choices = [c for c in streamed if c.choices]
    assert 1 <= len(with_choices) <= 3  # partial UTF-8 tokens may be folded into the next chunk
    assert with_choices[-1].choices[0].finish_reason == "length"


def test_auto_routes_hard_prompt_to_reasoning_and_greeting_to_fast(tierserve_stack):
    url = f"{tierserve_stack.base_url}/v1/chat/completions"
    hard = httpx.post(url, json={"model": "auto", "max_tokens": 2,
                                 "messages": [{"role": "user", "content": HARD}]}, timeout=60)
    easy = httpx.post(url, json={"model": "auto", "max_tokens": 2,
                                 "messages": [{"role": "user", "content": "Hello!"}]}, timeout=60)
    assert hard.status_code == easy.status_code == 200
    assert hard.headers["x-tierserve-tier"] == "reasoning"
    assert hard.headers["x-tierserve-route-reason"].startswith("rule:")
    assert hard.json()["model"] == "tiny-reasoning"
    assert easy.headers["x-tierserve-tier"] == "fast"
    assert easy.json()["model"] == "tiny-fast"


def test_client_request_id_is_echoed(tierserve_stack):
    resp = httpx.post(f"{tierserve_stack.base_url}/v1/chat/completions",
                      headers={"x-request-id": "my-trace-123"},
                      json={"model": "auto", "max_tokens": 1,
                            "messages": [{"role": "user", "content": "Hi"}]}, timeout=60)
    assert resp.headers["x-request-id"] == "my-trace-123"
    assert resp.headers.get_list("x-request-id") == ["my-trace-123"]


def test_one_json_log_line_per_request(tierserve_stack):
    rid = f"log-check-{time.time_ns()}"
    httpx.post(f"{tierserve_stack.base_url}/v1/chat/completions", headers={"x-request-id": rid},
               json={"model": "auto", "max_tokens": 3, "ignore_eos": True,
                     "messages": [{"role": "user", "content": "Hi"}]},
               timeout=60)
    deadline = time.monotonic() + 10
    lines: list[dict] = []
    while not lines and time.monotonic() < deadline:
        for path in tierserve_stack.log_dir.glob("replica_tierserve_ingress_*.log"):
            for line in path.read_text().splitlines():
                if rid in line and '"event": "request"' in line:
                    lines.append(json.loads(line[line.index("{"):]))
        time.sleep(0.5)
    assert len(lines) == 1
    assert lines[0]["tier"] == "fast" and lines[0]["status"] == 200
    assert lines[0]["completion_tokens"] == 3 and lines[0]["latency_ms"] > 0
    assert "prompt" not in lines[0]  # no prompt text unless log_prompts is on


@pytest.mark.parametrize("body, status, code", [
    (b"{not json", 400, "invalid_json"),
    (json.dumps({"model": "auto"}).encode(), 400, "invalid_request"),
    (json.dumps({"model": "auto", "messages": [{"role": "wizard", "content": "x"}]}).encode(),
     400, "invalid_request"),
    (json.dumps({"model": "auto", "max_tokens": -1,
                 "messages": [{"role": "user", "content": "x"}]}).encode(), 400, "invalid_request"),
    (json.dumps({"model": "gpt-17", "messages": [{"role": "user", "content": "x"}]}).encode(),
     404, "model_not_found"),
    (json.dumps({"model": "tiny-fast", "max_tokens": 2040,
                 "messages": [{"role": "user", "content": "word " * 400}]}).encode(),
     400, "context_length_exceeded"),
])
def test_errors_have_openai_shape(tierserve_stack, body, status, code):
    resp = httpx.post(f"{tierserve_stack.base_url}/v1/chat/completions", content=body,
                      headers={"content-type": "application/json"}, timeout=60)
    assert resp.status_code == status, resp.text
    err = resp.json()["error"]
    assert set(err) == {"message", "type", "param", "code"}
    assert err["code"] == code
    assert err["message"]


def test_context_error_on_stream_is_a_400_not_a_broken_stream(tierserve_stack):
    body = {"model": "tiny-fast", "stream": True, "max_tokens": 2040,
            "messages": [{"role": "user", "content": "word " * 400}]}
    resp = httpx.post(f"{tierserve_stack.base_url}/v1/chat/completions", json=body, timeout=60)
    assert resp.status_code == 400
    assert "context" in resp.json()["error"]["message"].lower()


def test_openai_sdk_raises_typed_errors(openai_client):
    with pytest.raises(openai.NotFoundError):
        openai_client.chat.completions.create(model="nope", messages=[{"role": "user", "content": "x"}])
    with pytest.raises(openai.BadRequestError):
        openai_client.chat.completions.create(model="auto", messages=[])


def test_disconnect_mid_stream_aborts_the_generation(tierserve_stack):
    tier = tierserve_stack.handle("tier-reasoning")
    unfinished = lambda: tier.num_unfinished_requests.remote().result(timeout_s=30)  # noqa: E731
    assert unfinished() == 0
    body = {"model": "tiny-reasoning", "stream": True, "max_tokens": 4000, "ignore_eos": True,
            "messages": [{"role": "user", "content": "Tell me a long story."}]}
    url = f"{tierserve_stack.base_url}/v1/chat/completions"
    with httpx.Client(timeout=60) as client, client.stream("POST", url, json=body) as resp:
            assert resp.status_code == 200
            chunks = resp.iter_bytes()
            next(chunks)
            running = unfinished()
            deadline = time.monotonic() + 5
            while running != 1 and time.monotonic() < deadline:  # a loaded machine may lag
                next(chunks)
                running = unfinished()
            assert running == 1
    # Left alone, the rest of 4000 tokens would take many more seconds.
    deadline = time.monotonic() + 3
    while unfinished() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert unfinished() == 0
