"""Three tiers on real vLLM (configs/profiles/local-cpu-3tier.yaml): each tier is chosen for
its kind of prompt, serves real tokens, and every decision explains itself."""

from __future__ import annotations

import json
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tooling.local_cluster import LocalStack

pytestmark = pytest.mark.e2e

PROFILE = "local-cpu-3tier"
# (prompt, tier, route reason) under the committed thresholds and rules.
CASES = [
    ("Which of the following best describes the function of mitochondria?\nA. Protein synthesis\n"
     "B. Energy production\nC. Lipid storage\nD. Cell division\nAnswer:", "fast", "score"),
    ("A train travels 60 km in 45 minutes. What is its average speed in km per hour?", "medium", "score"),
    ("In a class of 40 students, 60% are girls. 25% of the girls and 50% of the boys wear glasses. "
     "What percentage of the class wears glasses?", "reasoning", "score"),
    ("Thanks!", "fast", "rule:short-prompt"),
    ("Prove step by step that there are infinitely many primes.", "reasoning", "rule:proof-or-step-by-step"),
]


@pytest.fixture(scope="module")
def three_tier_stack() -> Iterator[tuple[LocalStack, Path]]:
    """A private stack of its own (free ports, temp dir), separate from the session's
    two-tier one: three tiny engines."""
    from tooling.local_cluster import start_private_stack, stop

    temp_dir = tempfile.mkdtemp(prefix="ts3-", dir="/tmp")  # short: Ray's unix sockets
    stack = None
    try:
        stack = start_private_stack(PROFILE, temp_dir)
        yield stack, Path(temp_dir)
    finally:
        if stack is not None:
            stop(stack)
        shutil.rmtree(temp_dir, ignore_errors=True)


def _chat(stack: LocalStack, content: str, **body) -> httpx.Response:
    return httpx.post(f"{stack.base_url}/v1/chat/completions", timeout=180,
                      json={"model": "auto", "max_tokens": 4, "ignore_eos": True,
                            "messages": [{"role": "user", "content": content}], **body})


@pytest.mark.parametrize(("prompt", "tier", "reason"), CASES, ids=[c[1] + ":" + c[2] for c in CASES])
def test_each_tier_is_chosen_for_its_kind_of_prompt(three_tier_stack, prompt, tier, reason) -> None:
    stack, _ = three_tier_stack
    r = _chat(stack, prompt)
    assert r.status_code == 200, r.text
    assert (r.headers["x-tierserve-tier"], r.headers["x-tierserve-route-reason"]) == (tier, reason)
    body = r.json()
    assert body["model"] == f"tiny-{tier}" and body["usage"]["completion_tokens"] == 4
    explain = r.headers["x-tierserve-route-explain"]
    assert "learned=" in explain and "ladder=" in explain or reason != "score"


def test_reasoning_effort_climbs_the_ladder(three_tier_stack) -> None:
    stack, _ = three_tier_stack
    for effort, tier in (("low", "fast"), ("medium", "medium"), ("high", "reasoning")):
        r = _chat(stack, "Thanks!", reasoning_effort=effort)
        assert r.status_code == 200, r.text
        assert (r.headers["x-tierserve-tier"], r.headers["x-tierserve-route-reason"]) == (
            tier, f"effort:{effort}")


def test_decision_log_line_has_each_plugin_and_the_scorer_version(three_tier_stack) -> None:
    stack, temp_dir = three_tier_stack
    r = _chat(stack, CASES[1][0])
    request_id = r.headers["x-request-id"]
    lines = [line for path in temp_dir.glob("**/logs/serve/*router*.log")
             for line in path.read_text(errors="replace").splitlines() if request_id in line]
    records = [json.loads(line[line.index('{"event": "route"'):]) for line in lines
               if '{"event": "route"' in line]
    assert records, f"no route log line for {request_id}"
    record = records[0]
    assert record["tier"] == "medium" and record["scorer_version"].startswith("complexity.json@")
    kinds = {c["plugin"]: c["kind"] for c in record["contributions"]}
    assert kinds["learned"] == "scorer" and kinds["ladder"] == "picker" and kinds["health"] == "filter"
    assert all(c["ms"] >= 0 for c in record["contributions"])


def test_stop_leaves_no_process_and_no_segment(three_tier_stack) -> None:
    """Last in the module (it takes the stack down; the fixture's own stop then finds
    nothing): `stop`, what `tierserve down` runs, ends every process of the stack, the vLLM
    engines included, and removes the /dev/shm segments they mapped."""
    import psutil

    from app.engine_shm import mapped_shm_segments
    from tooling.local_cluster import stack_processes, stop

    stack, _ = three_tier_stack
    procs = stack_processes(stack)
    assert sum(p.name().startswith("VLLM::EngineCore") for p in procs) == 3  # one per tier
    segments = mapped_shm_segments([p.pid for p in procs])
    stop(stack)
    assert stack_processes(stack) == []
    alive = [p for p in procs if p.is_running() and p.status() != psutil.STATUS_ZOMBIE]
    assert alive == [], [p.pid for p in alive]
    assert [s for s in segments if s.exists()] == []
