"""`tierserve bench replica-router`: multi-turn TTFT with each replica router of one tier.

For each router (`tiers[].replica_router`) the bench starts a private stack (free ports, own
temp dir, a copy of configs/) whose measured tier runs at exactly two replicas with vLLM
prefix caching on and `enable_prompt_tokens_details` (so each answer's usage says how many
prompt tokens the engine found in its cache); the other tiers are suspended, to leave the
two engines the machine. Then `rounds` times, `sessions` conversations run at once, each of
`turns` turns; every turn re-sends the whole history (a shared system prompt, the session's
earlier user turns and a fixed stand-in for each earlier answer: the random-weight tiny
models write noise) pinned to the tier's model, and its TTFT is taken.

Reported per router: TTFT p50/p95 of turn 1 and of turns >= 2 (the cache-hit candidates);
for turns >= 2, from each answer's cached-token count, the share that landed on the replica of
the session's previous turn and the share whose replica held some of the session's own
history (cached tokens beyond the prefix every session shares: only a replica that served an
earlier turn of this session has them); and from the Ray metrics port, vLLM's prefix cache
queries/hits and requests per replica over the run.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import httpx
import yaml

from loadtests.bench.stats import percentile
from loadtests.bench.stream_client import chat_body, stream_chat

ROUTERS = ("power_of_two", "prefix_cache_affinity")
# Words the synthetic conversations are made of (content does not matter to the engine,
# length and overlap do).
WORDS = ("replica", "tier", "prompt", "cache", "token", "stream", "node", "latency", "queue",
         "model", "router", "engine", "batch", "session", "prefix", "budget", "request", "signal",
         "metric", "scale", "deploy", "answer", "question", "reason", "context", "window", "score",
         "policy", "memory", "thread", "worker", "shard", "limit", "health", "probe", "retry",
         "config", "profile", "cluster", "ingress", "plan", "trace", "span", "label", "value")


@dataclass
class ReplicaRouterPlan:
    profile: str = "local-cpu"
    tier: str = "fast"
    routers: tuple[str, ...] = ROUTERS
    sessions: int = 8
    turns: int = 6
    rounds: int = 6  # fresh sessions each round; rounds run one after another
    max_tokens: int = 16
    # Shared by every session; ~2.9 tokens a word with the tiny models' tokenizer, so turn 1 is
    # ~480 prompt tokens (~340 shared) and each turn adds ~200 (more than one 128-token KV
    # block, vLLM's CPU default), up to ~1,460 at turn 6.
    system_words: int = 120
    user_words: int = 40
    reply_words: int = 20
    seed: int = 0


# --- the workload: pure logic ---------------------------------------------------------------

def _words(rng: random.Random, n: int) -> str:
    return " ".join(rng.choice(WORDS) for _ in range(n))


def system_prompt(plan: ReplicaRouterPlan) -> str:
    return "You are a terse assistant. " + _words(random.Random(f"system-{plan.seed}"), plan.system_words)


def conversation(plan: ReplicaRouterPlan, round_no: int, session: int) -> list[list[dict[str, str]]]:
    """The messages of each turn of one session: turn k re-sends turns 1..k-1 (each user
    message and a stand-in answer) and adds its own user message. Every session's first user
    message starts with its own tag, so sessions share only the system prompt."""
    rng = random.Random(f"session-{plan.seed}-{round_no}-{session}")
    history: list[dict[str, str]] = []
    if plan.system_words:
        history.append({"role": "system", "content": system_prompt(plan)})
    turns = []
    for turn in range(1, plan.turns + 1):
        tag = f"Session {round_no}.{session}, turn {turn}:"
        history.append({"role": "user", "content": f"{tag} {_words(rng, plan.user_words)}"})
        turns.append(list(history))
        history.append({"role": "assistant", "content": _words(rng, plan.reply_words)})
    return turns


def common_prefix_len(a: list[int], b: list[int]) -> int:
    n = 0
    for x, y in zip(a, b, strict=False):
        if x != y:
            break
        n += 1
    return n


def shared_prefix_tokens(first_turns: list[list[dict[str, str]]],
                         encode: Callable[[list[dict[str, str]]], list[int]]) -> int:
    """Prompt tokens that sessions' first turns have in common (the most any two share): a
    replica's cache can hold that much of a session's prompt without ever having served it."""
    ids = [encode(messages) for messages in first_turns]
    return max((common_prefix_len(a, b) for i, a in enumerate(ids) for b in ids[i + 1:]), default=0)


@dataclass
class TurnResult:
    round_no: int
    session: int
    turn: int
    ok: bool
    status: int
    ttft_s: float = 0.0
    prompt_tokens: int = 0
    cached_tokens: int | None = None


def _ttft(results: list[TurnResult]) -> dict[str, Any]:
    ok = [r.ttft_s * 1000 for r in results if r.ok]
    p50, p95 = percentile(ok, 50), percentile(ok, 95)
    return {"n": len(results), "errors": len(results) - len(ok),
            "ttft_p50_ms": None if p50 is None else round(p50, 1),
            "ttft_p95_ms": None if p95 is None else round(p95, 1)}


def same_replica_as_previous_turn(results: list[TurnResult], shared_tokens: int) -> list[bool]:
    """For each answered turn k >= 2 with cache figures (whose turn k-2 is known, if any): whether
    its replica held turn k-1's prompt. A replica that served turn k-1 has that prompt's full KV
    blocks; one that served only earlier turns has at most turn k-2's prompt (shared_tokens for
    k = 2). So "cached more than turn k-2's prompt" means "served turn k-1" when each turn adds
    more than a KV block (128 tokens on vLLM's CPU backend), as the bench's turns do."""
    prompts = {(r.round_no, r.session, r.turn): r.prompt_tokens for r in results if r.ok}
    out = []
    for r in results:
        if r.turn < 2 or not r.ok or r.cached_tokens is None:
            continue
        before = shared_tokens if r.turn == 2 else prompts.get((r.round_no, r.session, r.turn - 2))
        if before is not None:
            out.append(r.cached_tokens > before)
    return out


def _share(flags: list[bool]) -> float | None:
    return round(sum(flags) / len(flags), 3) if flags else None


def turn_figures(results: list[TurnResult], shared_tokens: int) -> dict[str, Any]:
    """TTFT of turn 1 and of turns >= 2; for turns >= 2, the share whose replica held the
    session's own history (cached tokens beyond `shared_tokens`: it served some earlier turn),
    the share whose replica served the previous turn, and the share of their prompt tokens
    served from the cache (None without cache figures)."""
    later = [r for r in results if r.turn >= 2]
    cached = [(r.cached_tokens, r.prompt_tokens) for r in later if r.ok and r.cached_tokens is not None]
    prompt = sum(p for _, p in cached)
    return {
        "turn_1": _ttft([r for r in results if r.turn == 1]),
        "turns_2_plus": _ttft(later),
        "history_hit_share": _share([c > shared_tokens for c, _ in cached]),
        "same_replica_share": _share(same_replica_as_previous_turn(results, shared_tokens)),
        "cached_token_share": round(sum(c for c, _ in cached) / prompt, 3) if prompt else None,
    }


def replica_counters(before: dict[str, dict[str, float]], after: dict[str, dict[str, float]]
                     ) -> dict[str, dict[str, float]]:
    """Per replica, what each counter grew by between two scrapes."""
    return {rep: {name: round(value - before.get(rep, {}).get(name, 0.0), 1)
                  for name, value in counters.items()}
            for rep, counters in sorted(after.items())}


# --- the live part ----------------------------------------------------------------------------

# vLLM's counters as Ray Serve LLM re-exports them (tooling/observability/names/vllm-metric-names.txt);
# labels include model_name and ReplicaId.
COUNTERS = {"ray_vllm_prefix_cache_queries_total": "prefix_queried_tokens",
            "ray_vllm_prefix_cache_hits_total": "prefix_hit_tokens",
            "ray_vllm_e2e_request_latency_seconds_count": "requests"}


def scrape_replica_counters(metrics_url: str, model: str) -> dict[str, dict[str, float]]:
    """The COUNTERS of `model`'s engines, per Serve replica, from a Ray metrics endpoint."""
    from prometheus_client.parser import text_string_to_metric_families

    text = httpx.get(metrics_url, timeout=10, trust_env=False).text
    out: dict[str, dict[str, float]] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            name = COUNTERS.get(sample.name)
            if name is None or sample.labels.get("model_name") != model:
                continue
            rep = sample.labels.get("ReplicaId", "?")
            out.setdefault(rep, {}).setdefault(name, 0.0)
            out[rep][name] += sample.value
    return out


def settled_counters(metrics_url: str, model: str, served: int, timeout_s: float = 60
                     ) -> dict[str, dict[str, float]]:
    """Scrape until the engines' request counters add up to at least `served` (Ray exports
    metrics every few seconds) and stop changing, or `timeout_s` passes."""
    deadline = time.monotonic() + timeout_s
    last: dict[str, dict[str, float]] | None = None
    while True:
        now = scrape_replica_counters(metrics_url, model)
        total = sum(c.get("requests", 0.0) for c in now.values())
        if (total >= served and now == last) or time.monotonic() > deadline:
            return now
        last = now
        time.sleep(3)


async def run_session(client: httpx.AsyncClient, url: str, model: str, plan: ReplicaRouterPlan,
                      round_no: int, session: int) -> list[TurnResult]:
    results = []
    for turn, messages in enumerate(conversation(plan, round_no, session), start=1):
        body = {**chat_body(model, "", plan.max_tokens), "messages": messages}
        try:
            t = await stream_chat(client, url, body)
            results.append(TurnResult(round_no, session, turn, t.ok, t.status, t.ttft_s,
                                      t.prompt_tokens, t.cached_tokens))
        except httpx.HTTPError:
            results.append(TurnResult(round_no, session, turn, False, -1))
    return results


async def run_workload(base_url: str, model: str, plan: ReplicaRouterPlan) -> list[TurnResult]:
    url = f"{base_url}/v1/chat/completions"
    results: list[TurnResult] = []
    limits = httpx.Limits(max_connections=plan.sessions, max_keepalive_connections=plan.sessions)
    async with httpx.AsyncClient(timeout=120, limits=limits, trust_env=False) as client:
        for round_no in range(plan.rounds):
            for got in await asyncio.gather(*(run_session(client, url, model, plan, round_no, s)
                                              for s in range(plan.sessions))):
                results.extend(got)
    return results


def two_replica_profile(configs: Path, plan: ReplicaRouterPlan, router: str) -> None:
    """Edit the profile in a copy of configs/: the measured tier at exactly two replicas with
    `router`, prefix caching and per-answer cache figures on; every other tier suspended."""
    path = configs / "profiles" / f"{plan.profile}.yaml"
    profile = yaml.safe_load(path.read_text())
    for tier in profile["tiers"]:
        scaling = tier.setdefault("autoscaling", {})
        if tier["name"] == plan.tier:
            scaling.update(min_replicas=2, max_replicas=2)
            scaling.pop("initial_replicas", None)
            tier["replica_router"] = router
            tier.setdefault("engine_kwargs", {}).update(enable_prefix_caching=True,
                                                        enable_prompt_tokens_details=True)
        else:
            scaling.update(min_replicas=0, max_replicas=0)
            scaling.pop("initial_replicas", None)
    path.write_text(yaml.safe_dump(profile, sort_keys=False))


@contextmanager
def _env(key: str, value: str) -> Iterator[None]:
    saved = os.environ.get(key)
    os.environ[key] = value
    try:
        yield
    finally:
        if saved is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = saved


def check_fits(plan: ReplicaRouterPlan, encode: Callable[[list[dict[str, str]]], list[int]],
               max_model_len: int) -> None:
    """ValueError when the longest turn's prompt and answer would not fit the tier's context."""
    longest = max(len(encode(conversation(plan, r, s)[-1]))
                  for r in range(plan.rounds) for s in range(plan.sessions))
    if longest + plan.max_tokens > max_model_len:
        raise ValueError(f"the last turn is {longest} prompt tokens + {plan.max_tokens}: more than the "
                         f"tier's max_model_len {max_model_len}; use fewer turns or words")


def _encoder(model_source: str) -> Callable[[list[dict[str, str]]], list[int]] | None:
    """Token ids of a chat prompt as the engine sees it, with the tier's own tokenizer and chat
    template (None when the model is not a local directory)."""
    if not Path(model_source).is_dir():
        return None
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(model_source)

    def encode(messages: list[dict[str, str]]) -> list[int]:
        text = tok.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        return tok.encode(text, add_special_tokens=False)
    return encode


def measure_router(plan: ReplicaRouterPlan, router: str) -> dict[str, Any]:
    from app.config.loader import config_dir, load_config
    from tooling.local_cluster import start_private_stack, stop

    temp_dir = tempfile.mkdtemp(prefix="tsrr-", dir="/tmp")  # short: Ray's unix sockets
    configs = Path(temp_dir) / "configs"
    shutil.copytree(config_dir(), configs)
    two_replica_profile(configs, plan, router)
    stack = None
    saved_db = None
    try:
        # The copy reaches every replica through the raylet's env.
        with _env("TIERSERVE_CONFIG_DIR", str(configs)):
            config = load_config(plan.profile)
            tier = config.tier(plan.tier)
            encode = _encoder(tier.model_source)
            if encode is not None:
                check_fits(plan, encode, tier.max_model_len)
            saved_db = (config.server.keys.db_url_env, os.environ.get(config.server.keys.db_url_env))
            started = time.monotonic()
            stack = start_private_stack(plan.profile, temp_dir)
            ready_s = time.monotonic() - started
            metrics_url = f"http://127.0.0.1:{stack.metrics_port}/metrics"
            model = tier.served_model_name
            # Each replica's warm-up generation is counted before the workload starts.
            before = settled_counters(metrics_url, model, served=2, timeout_s=30)
            started = time.monotonic()
            results = asyncio.run(run_workload(stack.base_url, model, plan))
            wall_s = time.monotonic() - started
            after = settled_counters(metrics_url, model, served=int(
                sum(c.get("requests", 0.0) for c in before.values())) + sum(r.ok for r in results))
    finally:
        if stack is not None:
            stop(stack)
        if saved_db is not None:
            key, value = saved_db
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        shutil.rmtree(temp_dir, ignore_errors=True)
    firsts = [conversation(plan, rnd, s)[0] for rnd in range(plan.rounds) for s in range(plan.sessions)]
    shared = shared_prefix_tokens(firsts, encode) if encode else None
    figures = turn_figures(results, shared) if shared is not None else {
        **turn_figures(results, 0), "history_hit_share": None, "same_replica_share": None}
    per_replica = replica_counters(before, after)
    return {"router": router, "deploy_to_ready_s": round(ready_s, 1), "workload_s": round(wall_s, 1),
            "shared_prefix_tokens": shared, **figures, "per_replica": per_replica,
            "turns": [asdict(r) for r in results]}


def run_replica_router_bench(plan: ReplicaRouterPlan, out_dir: Path) -> dict[str, Any]:
    out_dir.mkdir(parents=True, exist_ok=True)
    runs = []
    for router in plan.routers:
        print(f"router {router}: starting a stack (tier {plan.tier} at 2 replicas) ...", flush=True)
        run = measure_router(plan, router)
        (out_dir / f"{router}.json").write_text(json.dumps(run, indent=2))
        print(json.dumps({k: v for k, v in run.items() if k != "turns"}), flush=True)
        runs.append(run)
    summary = {"plan": asdict(plan), "runs": [{k: v for k, v in r.items() if k != "turns"} for r in runs]}
    (out_dir / "replica_router.json").write_text(json.dumps(summary, indent=2))
    (out_dir / "replica_router.md").write_text(table(summary))
    return summary


def _ms(figs: dict[str, Any]) -> str:
    return f"{figs['ttft_p50_ms']} / {figs['ttft_p95_ms']} (n={figs['n']}, errors {figs['errors']})"


def table(summary: dict[str, Any]) -> str:
    lines = ["| replica router | TTFT turn 1, p50 / p95 ms | TTFT turns >= 2, p50 / p95 ms | "
             "turns >= 2 on the previous turn's replica | turns >= 2 that found their history cached | "
             "prompt tokens from cache (turns >= 2) | requests per replica | engine prefix hit rate |",
             "|---|---|---|---|---|---|---|---|"]
    for run in summary["runs"]:
        reps = run["per_replica"].values()
        split = " / ".join(str(int(c.get("requests", 0))) for c in reps) or "–"
        queried = sum(c.get("prefix_queried_tokens", 0) for c in reps)
        hit_rate = round(sum(c.get("prefix_hit_tokens", 0) for c in reps) / queried, 3) if queried else "–"
        lines.append(f"| {run['router']} | {_ms(run['turn_1'])} | {_ms(run['turns_2_plus'])} | "
                     f"{run['same_replica_share']} | {run['history_hit_share']} | "
                     f"{run['cached_token_share']} | {split} | {hit_rate} |")
    return "\n".join(lines) + "\n"
