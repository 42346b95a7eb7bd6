"""Cold start: the engine-start hook that skips ray.serve.llm's no-op download task, the
router's fresh look at replica states while readiness waits, and the bench's phase split."""

from __future__ import annotations

import asyncio
from datetime import datetime
from types import SimpleNamespace

import pytest

from app.config.loader import load_config
from loadtests.bench import coldstart_phases as cp


@pytest.mark.parametrize(("source", "runs_download_task"), [
    (None, False),  # the profile's local directory
    ("Qwen/Qwen2-0.5B", False),  # vLLM reads a Hugging Face id itself; Ray's task fetches nothing
    ("s3://bucket/tiny", True),  # a bucket: ray.serve.llm's own download must run
])
def test_node_init_is_skipped_only_when_there_is_nothing_to_download(source, runs_download_task):
    from app.graph import llm_config_for
    from deployments.engine_init import LocalModelInit

    tier = load_config("local-cpu").tier("fast")
    if source is not None:
        tier = tier.model_copy(update={"model_source": source})
    config = llm_config_for(tier)
    assert config.callback_config.callback_class == "deployments.engine_init:LocalModelInit"
    hook = LocalModelInit(llm_config=config)
    asyncio.run(hook.on_before_node_init())
    assert hook.ctx.run_init_node is runs_download_task


def _status(config, running: int):
    deployments = {t.deployment_name: SimpleNamespace(replica_states={"RUNNING": running} if running else {})
                   for t in config.tiers}
    return SimpleNamespace(applications={"tierserve": SimpleNamespace(deployments=deployments)})


def test_router_reads_replica_states_afresh_while_a_tier_is_down(monkeypatch):
    from deployments import router as router_module

    config = load_config("local-cpu")
    router = router_module.Router.__new__(router_module.Router)  # no Serve replica context here
    router._config, router._app_name, router._no_replicas = config, "tierserve", {"fast"}
    reads = []
    states = iter([_status(config, 0), _status(config, 1)])
    monkeypatch.setattr(router_module.serve, "status", lambda: reads.append(1) or next(states))
    assert asyncio.run(router.tiers_seen_down()) == ["fast", "reasoning"]  # still starting
    assert asyncio.run(router.tiers_seen_down()) == []  # RUNNING now: seen at once, not next poll
    assert asyncio.run(router.tiers_seen_down()) == [] and len(reads) == 2  # all up: no extra read


def _at(base: float, s: float, vllm: bool = False) -> str:
    t = datetime.fromtimestamp(base + s)
    if vllm:
        return t.strftime("%m-%d %H:%M:%S")
    return t.strftime("%Y-%m-%d %H:%M:%S,") + f"{t.microsecond // 1000:03d}"


def test_bare_phases_follow_vllm_start_up_lines(tmp_path):
    t0 = datetime(2026, 11, 29, 19, 28, 24).timestamp()
    log = tmp_path / "bare-vllm.log"
    log.write_text("\n".join([
        "Triton is installed, but doesn't include CPU backend. Disabling Triton.",
        f"(APIServer pid=1) INFO {_at(t0, 6, True)} [api_utils.py:347] version 0.32.0",
        f"(EngineCore pid=2) INFO {_at(t0, 12, True)} [core.py:133] Initializing a V1 LLM engine (v0.32.0)",
        f"(Worker pid=3) INFO {_at(t0, 18, True)} [cpu_model_runner.py:68] Starting to load model m...",
        f"(EngineCore pid=2) INFO {_at(t0, 19, True)} [core.py:402] init engine (profile, ...) took 0.37 s",
    ]))
    got = cp.bare_phases(log, t0, t0 + 20.5)
    assert [p for p, _ in got] == ["start -> front end imported", "front end imported -> engine process up",
                                   "engine process up -> worker process up",
                                   "worker process up -> engine initialized", "engine initialized -> ready"]
    assert [round(s, 1) for _, s in got] == [6, 6, 6, 1, 1.5]


def test_tierserve_phases_from_serve_and_replica_logs(tmp_path):
    t0 = datetime(2026, 11, 29, 19, 28, 55, 500000).timestamp()
    serve_dir = tmp_path / "serve"
    serve_dir.mkdir()
    rep = "Replica(id='wyl9', deployment='tier-fast', app='tierserve')"
    (serve_dir / "controller_11.log").write_text("\n".join([
        f"INFO {_at(t0, -60)} controller 11 -- Starting Replica(id='old1', deployment='tier-fast', "
        "app='tierserve').",  # an earlier deploy in the same session: not this one
        f"INFO {_at(t0, 0.5)} controller 11 -- Starting Replica(id='rtr1', deployment='router', "
        "app='tierserve').",
        f"INFO {_at(t0, 0.6)} controller 11 -- Starting {rep}.",
        f"INFO {_at(t0, 23.0)} controller 11 -- {rep} started successfully on node 'n' after 22.4s "
        "(PID: 754). Replica constructor, reconfigure method, and initial health check took 15.4s.",
    ]))
    (serve_dir / "replica_tierserve_tier-fast_wyl9.log").write_text("\n".join([
        f"INFO {_at(t0, 7.5)} tierserve_tier-fast wyl9 -- Started initializing replica.",
        f"INFO {_at(t0, 22.8)} tierserve_tier-fast wyl9 -- tier fast: replica ready in 15.20s "
        "(model 0.00s, engine 14.60s, warm-up 0.40s)",
    ]))
    (tmp_path / "worker-abc-01000000-754.out").write_text("\n".join([
        ":actor_name:ServeReplica:tierserve:tier-fast",
        f"(EngineCore pid=9) INFO {_at(t0, 13, True)} [core.py:133] Initializing a V1 LLM engine (v0.32.0)",
        f"(Worker pid=10) INFO {_at(t0, 19, True)} [cpu_model_runner.py:68] Starting to load model m...",
        f"(EngineCore pid=9) INFO {_at(t0, 21, True)} [core.py:402] init engine took 0.36 s",
    ]))
    got, split = cp.tierserve_phases(tmp_path, "tier-fast", t0, t0 + 23.3)
    assert [p.split(" -> ")[1] for p, _ in got] == [*cp.TIERSERVE_ORDER, "ready"]
    assert dict(got)["start -> replica scheduled"] == pytest.approx(0.6, abs=0.01)
    assert dict(got)["replica scheduled -> constructor started"] == pytest.approx(6.9, abs=0.01)
    assert sum(s for _, s in got) == pytest.approx(23.3, abs=0.01)
    assert split == {"constructor": 15.2, "model": 0.0, "engine": 14.6, "warm-up": 0.4}


@pytest.mark.parametrize("profile", ["local-cpu", "local-cpu-3tier", "local-elastic"])
def test_single_tier_config_is_a_valid_profile_for_each_tier(profile):
    from loadtests.bench.targets import single_tier_config

    config = load_config(profile)
    for tier in config.tiers:
        one = single_tier_config(config, tier.name)
        assert [t.name for t in one.tiers] == [tier.name]
        assert one.routing.ladder == [tier.name] and one.routing.default_tier == tier.name


def test_serve_log_survives_vllm_logging_setup(tmp_path):
    """vLLM's dictConfig at engine start closes every handler in the process (here: the one
    close() it makes on Serve's handler); the replica's log must go on."""
    import logging.handlers

    from deployments.tier import serve_log_kept

    path = tmp_path / "replica.log"
    memory = logging.handlers.MemoryHandler(capacity=100, target=logging.FileHandler(path),
                                            flushLevel=logging.ERROR)
    serve_logger = logging.getLogger("ray.serve")
    serve_logger.addHandler(memory)
    old_level = serve_logger.level
    serve_logger.setLevel(logging.INFO)
    try:
        with serve_log_kept():
            memory.close()  # what logging.config.dictConfig does to every handler
        assert memory.target is not None
        logging.getLogger("ray.serve.tierserve.tier").info("tier fast: replica ready")
        memory.flush()
        assert "tier fast: replica ready" in path.read_text()
    finally:
        serve_logger.removeHandler(memory)
        serve_logger.setLevel(old_level)
        memory.close()
