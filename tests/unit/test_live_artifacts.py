"""Promotion is node-independent: the router's user_config carries a candidate scorer artifact
(content + sha256), names a shipped one by its digest, and a router whose node lacks the file
loads the promoted one all the same (app/config/live_artifacts.py, app/config/live.py)."""

from __future__ import annotations

import asyncio
import hashlib
import json
import shutil
from pathlib import Path
from types import SimpleNamespace

import pytest
import yaml

from app.config import live_artifacts, load_config
from app.config.live import apply_router_user_config, router_user_config
from app.config.loader import REPO_ROOT, ConfigError
from app.config.schema import TierserveConfig
from app.routing.assemble import build_pipeline

SHIPPED = "app/routing/artifacts/complexity.json"


@pytest.fixture(autouse=True)
def node_cache(tmp_path, monkeypatch) -> Path:
    """This test's node-local cache of carried artifacts."""
    cache = tmp_path / "node-cache"
    monkeypatch.setattr(live_artifacts, "cache_dir", lambda: cache)
    return cache


def _candidate(path: Path) -> Path:
    """A trained artifact of its own (the shipped hand-feature scorer, other provenance)."""
    data = json.loads((REPO_ROOT / SHIPPED).read_text())
    data["meta"]["note"] = f"candidate at {path.name}"
    path.write_text(json.dumps(data, indent=1, sort_keys=True) + "\n")
    return path


def _with(config: TierserveConfig, **learned: str | None) -> TierserveConfig:
    routing = config.routing.model_copy(update={"learned": config.routing.learned.model_copy(update=learned)})
    return config.model_copy(update={"routing": routing})


def _through_yaml(user_config: dict) -> dict:
    """As a Serve config file (or serveConfigV2) hands it to Serve."""
    return yaml.safe_load(yaml.safe_dump({"user_config": user_config}, sort_keys=False))["user_config"]


def test_a_shipped_artifact_travels_as_its_digest():
    config = _with(load_config("local-cpu"), artifact=SHIPPED)
    uc = router_user_config(config)
    digest = hashlib.sha256((REPO_ROOT / SHIPPED).read_bytes()).hexdigest()
    assert uc["artifacts"] == {SHIPPED: {"sha256": digest}}
    assert apply_router_user_config(config, _through_yaml(uc)).routing.learned.artifact == SHIPPED


def test_a_promoted_candidate_loads_on_a_router_whose_node_lacks_the_file(tmp_path, node_cache):
    live = _candidate(tmp_path / "candidate.json")
    shadow = _candidate(tmp_path / "next.json")
    versions = {p.name: f"{p.name}@{hashlib.sha256(p.read_bytes()).hexdigest()[:12]}"
                for p in (live, shadow)}
    config = _with(load_config("local-cpu"), artifact=str(live), shadow_artifact=str(shadow))
    uc = _through_yaml(router_user_config(config))
    assert uc["artifacts"][str(live)]["content"] == live.read_text()
    live.unlink()  # the router's node has neither file
    shadow.unlink()
    applied = apply_router_user_config(load_config("local-cpu"), uc)
    learned = applied.routing.learned
    assert Path(learned.artifact).parent.parent == node_cache
    assert build_pipeline(applied).scorer_version == versions["candidate.json"]  # as on the promoting node
    from app.routing.learning import ShadowScorer

    assert ShadowScorer(applied, learned.shadow_artifact).version == versions["next.json"]
    # A second apply (another replica on the node) reuses the file.
    assert apply_router_user_config(load_config("local-cpu"), uc).routing.learned == learned


def test_a_tampered_artifact_is_refused(tmp_path):
    cand = _candidate(tmp_path / "candidate.json")
    config = _with(load_config("local-cpu"), artifact=str(cand))
    uc = router_user_config(config)
    entry = uc["artifacts"][str(cand)]

    def refused(entry: dict, match: str) -> None:
        bad = {**uc, "artifacts": {str(cand): entry}}
        with pytest.raises(ValueError, match=match):
            apply_router_user_config(config, bad)

    refused({**entry, "content": entry["content"].replace('"bias": ', '"bias": 1')}, "altered on the way")
    refused({**entry, "sha256": hashlib.sha256(b"other").hexdigest()}, "altered on the way")
    refused({**entry, "sha256": "abc"}, "sha256")  # not a digest at all
    refused({**entry, "size": 1}, "size")  # only sha256 and content
    with pytest.raises(ValueError, match="no learned setting names"):
        apply_router_user_config(config, {**uc, "artifacts": {**uc["artifacts"], "x.json": entry}})


def test_a_shipped_artifact_of_another_version_is_refused(tmp_path, monkeypatch):
    # A node (image) with another copy of a shipped artifact than the promoted one.
    config = _with(load_config("local-cpu"), artifact=SHIPPED)
    uc = router_user_config(config)
    other = tmp_path / "repo"
    (other / "app/routing/artifacts").mkdir(parents=True)
    _candidate(other / SHIPPED)
    monkeypatch.setattr(live_artifacts, "REPO_ROOT", other)
    with pytest.raises(ValueError, match="another commit"):
        apply_router_user_config(config, uc)
    (other / SHIPPED).unlink()
    with pytest.raises(ValueError, match="does not have"):
        apply_router_user_config(config, uc)


def test_rendering_names_the_file_that_sets_a_missing_artifact(tmp_path):
    config = _with(load_config("local-cpu"), shadow_artifact=str(tmp_path / "gone.json"))
    with pytest.raises(ConfigError, match=r"routing\.learned\.shadow_artifact: cannot read .*gone\.json"):
        router_user_config(config)


def test_router_builds_from_the_user_config_serve_hands_it(tmp_path, monkeypatch):
    # A fresh router replica on a node without the candidate: the config it is built with (the
    # configs/ of the node that built the app) names a file that is not here; Serve's
    # user_config carries it.
    from deployments import router as router_module

    cand = _candidate(tmp_path / "candidate.json")
    promoted = _with(load_config("local-cpu"), artifact=str(cand))
    uc = _through_yaml(router_user_config(promoted))
    version = f"candidate.json@{hashlib.sha256(cand.read_bytes()).hexdigest()[:12]}"
    cand.unlink()
    context = SimpleNamespace(app_name="tierserve", _deployment_config=SimpleNamespace(user_config=uc))
    monkeypatch.setattr(router_module.serve, "get_replica_context", lambda: context)
    monkeypatch.setattr(router_module.serve, "status", lambda: SimpleNamespace(applications={}))

    async def start() -> str:
        router = router_module.Router.__new__(router_module.Router)
        await router.__init__(promoted)  # as Serve constructs it: an async __init__
        try:
            built = router._pipeline
            await router.reconfigure(uc)  # Serve's first call: the same user_config, no rebuild
            assert router._pipeline is built
            return built.scorer_version
        finally:
            router._watcher.cancel()

    assert asyncio.run(start()) == version


def test_route_promote_carries_a_candidate_and_rerenders_kuberay_values(tmp_path, monkeypatch, capsys):
    from tooling.cli import main

    shutil.copytree(REPO_ROOT / "configs", tmp_path / "configs")
    monkeypatch.setenv("TIERSERVE_CONFIG_DIR", str(tmp_path / "configs"))
    cand = _candidate(tmp_path / "candidate.json")
    out, k8s = tmp_path / "serve_config.yaml", tmp_path / "k8s"
    assert main(["route-promote", str(cand), "--profile", "gpu", "--keep-thresholds",
                 "--serve-config", str(out), "--k8s-out", str(k8s)]) == 0
    said = capsys.readouterr().out
    assert "carries" in said and "helm upgrade --install" in said
    assert str(k8s / "values.generated.yaml") in said
    generated = yaml.safe_load((k8s / "values.generated.yaml").read_text())["generated"]
    cand.unlink()
    for doc in (yaml.safe_load(out.read_text()), yaml.safe_load(generated["serveConfigV2"])):
        (router,) = doc["applications"][0]["deployments"][:1]
        applied = apply_router_user_config(load_config("gpu"), router["user_config"])
        assert Path(applied.routing.learned.artifact).name == "candidate.json"
