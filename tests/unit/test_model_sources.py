"""Model sources against a real S3-compatible HTTP server (moto on loopback) and a real
Hugging Face cache layout: push, pull, verify, resume, one download per node, errors."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from app.models import hf, s3
from app.models.cache import ModelCache, default_cache_dir
from app.models.manifest import MANIFEST_NAME, VerificationError
from app.models.sources import ModelSourceError, SourceKind, kind_of, resolve
from tests.moto_s3 import moto_s3
from tooling.local_cluster import free_port

REPO = Path(__file__).resolve().parents[2]
TINY = REPO / "models" / "tiny-fast"
BUCKET = "tierserve-models"


@pytest.fixture(scope="module")
def moto_env():
    if not (TINY / "model.safetensors").exists():
        pytest.fail("tiny models missing: run `make setup` (tierserve models make-tiny)")
    with moto_s3() as env:
        yield env


@pytest.fixture
def s3_env(moto_env, monkeypatch, tmp_path):
    """Endpoint and credentials as a replica would get them: from the environment."""
    env = {**moto_env, "TIERSERVE_MODEL_CACHE": str(tmp_path / "cache")}
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    s3.client().create_bucket(Bucket=BUCKET)
    return env


def _uri(tmp_path: Path) -> str:
    # A prefix per test: each starts from an empty "directory" in the shared bucket.
    return f"s3://{BUCKET}/{tmp_path.name}/tiny-fast"


def _same_files(a: Path, b: Path) -> None:
    names = sorted(p.name for p in a.iterdir() if p.is_file())
    assert names, a
    for name in names:
        assert (a / name).read_bytes() == (b / name).read_bytes(), name


class Interrupt(Exception):
    pass


class StopAfter:
    """A progress sink that raises once `limit` bytes arrived, as a killed pull would stop."""

    def __init__(self, limit: int) -> None:
        self.limit, self.seen = limit, 0

    def start(self, what, total, done):
        pass

    def advance(self, n):
        self.seen += n
        if self.seen >= self.limit:
            raise Interrupt(f"stopped after {self.seen} bytes")

    def close(self):
        pass


def test_source_kinds():
    assert kind_of("models/tiny-fast") is SourceKind.LOCAL
    assert kind_of(str(TINY)) is SourceKind.LOCAL
    assert kind_of("Qwen/Qwen2.5-1.5B-Instruct") is SourceKind.HF
    assert kind_of("meta-llama/Llama-3.1-8B-Instruct@main") is SourceKind.HF
    assert kind_of("s3://bucket/some/prefix") is SourceKind.S3
    with pytest.raises(ModelSourceError, match="gs://b/m.*unsupported scheme"):
        kind_of("gs://b/m")
    with pytest.raises(ModelSourceError, match="/nonexistent/model.*no such directory"):
        resolve("/nonexistent/model")


def test_default_cache_dir(monkeypatch):
    monkeypatch.delenv("TIERSERVE_MODEL_CACHE", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", "/var/cache/x")
    assert default_cache_dir() == Path("/var/cache/x/tierserve/models")
    monkeypatch.setenv("TIERSERVE_MODEL_CACHE", "/models-cache")
    assert default_cache_dir() == Path("/models-cache")


def test_push_writes_a_manifest_and_pull_verifies_into_the_cache(s3_env, tmp_path):
    uri = _uri(tmp_path)
    manifest = s3.push(TINY, uri)
    stored = json.loads(s3.client().get_object(
        Bucket=BUCKET, Key=f"{tmp_path.name}/tiny-fast/{MANIFEST_NAME}")["Body"].read())
    by_path = {f["path"]: f for f in stored["files"]}
    assert set(by_path) == {p.name for p in TINY.iterdir() if p.is_file()}
    weights = by_path["model.safetensors"]
    assert weights["sha256"] == hashlib.sha256((TINY / "model.safetensors").read_bytes()).hexdigest()
    assert weights["size"] == (TINY / "model.safetensors").stat().st_size

    # Small chunks: the weights take several parallel ranged GETs.
    got = resolve(uri, settings=s3.TransferSettings(chunk_bytes=128 << 10, max_workers=4))
    assert (got.kind, got.cache_hit, got.version) == (SourceKind.S3, False, manifest.version)
    assert got.fetched_bytes == got.total_bytes == manifest.total_bytes
    path = Path(got.path)
    assert path.parent.parent == Path(s3_env["TIERSERVE_MODEL_CACHE"])
    _same_files(TINY, path)
    assert (path / MANIFEST_NAME).is_file()
    assert not list(path.glob("*.part*"))

    again = resolve(uri)
    assert (again.cache_hit, again.fetched_bytes, again.path) == (True, 0, got.path)


def test_a_corrupted_object_fails_verification_and_is_never_cached(s3_env, tmp_path):
    uri = _uri(tmp_path)
    s3.push(TINY, uri)
    data = bytearray((TINY / "model.safetensors").read_bytes())
    data[len(data) // 2] ^= 0xFF  # same size, one byte different
    s3.client().put_object(Bucket=BUCKET, Key=f"{tmp_path.name}/tiny-fast/model.safetensors",
                           Body=bytes(data))
    with pytest.raises(VerificationError) as err:
        resolve(uri)
    message = str(err.value)
    assert uri in message and "model.safetensors" in message and "sha256" in message
    assert "push it again" in message
    cache = ModelCache()
    assert cache.entries() == []
    assert not list(cache.root.rglob("model.safetensors*"))  # the bad bytes were deleted


def test_verify_reports_a_corrupted_cache_entry(s3_env, tmp_path, capsys):
    from tooling.cli import main

    uri = _uri(tmp_path)
    assert main(["models", "push", str(TINY), uri, "--quiet"]) == 0
    assert main(["models", "pull", uri, "--quiet"]) == 0
    assert main(["models", "verify"]) == 0
    assert "ok   " + uri in capsys.readouterr().out
    entry = ModelCache().entries()[0]
    weights = Path(entry.path) / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[100] ^= 0x01
    weights.write_bytes(bytes(data))
    assert main(["models", "verify", uri]) == 1
    out = capsys.readouterr().out
    assert f"FAIL {uri}@{entry.version}" in out and "model.safetensors has sha256" in out
    assert "pull the model again" in out


def test_an_interrupted_pull_resumes_where_it_stopped(s3_env, tmp_path):
    uri = _uri(tmp_path)
    manifest = s3.push(TINY, uri)
    settings = s3.TransferSettings(chunk_bytes=64 << 10, block_bytes=16 << 10, max_workers=2,
                                   save_every_bytes=16 << 10)
    with pytest.raises(Interrupt):
        resolve(uri, settings=settings, progress=StopAfter(300 << 10))
    cache = ModelCache()
    assert cache.entries() == []  # nothing half-done is visible
    staging = cache.staging_dir(uri, manifest.version)
    states = list(staging.glob("*.part.json"))
    assert states, "the interrupted pull left no resume state"
    saved = sum(sum(json.loads(p.read_text())["done"]) for p in states)
    saved += sum(p.stat().st_size for p in staging.iterdir() if p.is_file() and ".part" not in p.name)
    assert saved > 0

    got = resolve(uri, settings=settings)
    assert not got.cache_hit
    assert got.resumed_bytes == saved
    assert got.fetched_bytes == manifest.total_bytes - saved
    _same_files(TINY, Path(got.path))
    assert not staging.exists()


def _pull_cmd(uri: str) -> list[str]:
    return [sys.executable, "-m", "tooling.cli", "models", "pull", uri, "--json", "--quiet"]


def test_two_concurrent_pulls_download_once(s3_env, tmp_path):
    uri = _uri(tmp_path)
    manifest = s3.push(TINY, uri)
    cache = ModelCache()
    env = {**os.environ, **s3_env}
    logs = [tmp_path / f"pull{i}.log" for i in range(2)]
    # Hold the node's lock so both pullers are provably waiting at the same time.
    with cache.lock(uri):
        procs = [subprocess.Popen(_pull_cmd(uri), cwd=REPO, env=env, stdout=subprocess.PIPE,
                                  stderr=log.open("w"), text=True) for log in logs]
        deadline = time.monotonic() + 120
        while not all("waiting for another process" in log.read_text() for log in logs):
            assert time.monotonic() < deadline, [log.read_text() for log in logs]
            assert all(p.poll() is None for p in procs), [log.read_text() for log in logs]
            time.sleep(0.2)
    results = []
    for proc, log in zip(procs, logs, strict=True):
        out, _ = proc.communicate(timeout=120)
        assert proc.returncode == 0, log.read_text()
        results.append(json.loads(out))
    assert sorted(r["cache_hit"] for r in results) == [False, True]
    assert sum(r["fetched_bytes"] for r in results) == manifest.total_bytes
    assert results[0]["path"] == results[1]["path"]
    assert len(cache.entries()) == 1


def test_s3_errors_name_the_source_and_the_fix(s3_env, tmp_path, monkeypatch):
    uri = _uri(tmp_path)
    with pytest.raises(s3.S3Error, match=f"{uri}.*not found.*tierserve models push DIR {uri}"):
        resolve(uri)
    with pytest.raises(s3.S3Error, match="s3://no-such-bucket-x/m.*bucket does not exist"):
        resolve("s3://no-such-bucket-x/m")
    s3.push(TINY, uri)
    first = resolve(uri)
    closed = f"http://127.0.0.1:{free_port()}"
    monkeypatch.setenv("AWS_ENDPOINT_URL_S3", closed)
    # Store unreachable: the copy this node already has is used (with a warning) ...
    assert resolve(uri).path == first.path
    # ... and without one, the error names the endpoint.
    with pytest.raises(s3.S3Unreachable, match=f"{closed}.*cannot connect.*AWS_ENDPOINT_URL_S3"):
        resolve(uri, cache=ModelCache(tmp_path / "empty-cache"))


def test_list_shows_cached_models_and_the_tiers_using_them(s3_env, tmp_path, capsys, monkeypatch):
    from tooling.cli import main
    from tooling.models import cli as models_cli

    uri = _uri(tmp_path)
    s3.push(TINY, uri)
    resolve(uri)
    monkeypatch.setattr(models_cli, "_tiers_by_source", lambda: {uri: ["local-s3/fast"]})
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "no-hf-cache"))
    assert main(["models", "list", "--json"]) == 0
    listed = json.loads(capsys.readouterr().out)
    assert [(m["source"], m["tiers"]) for m in listed["models"]] == [(uri, ["local-s3/fast"])]
    assert listed["models"][0]["mb"] == round(sum(p.stat().st_size for p in TINY.iterdir()) / 1e6, 1)


def test_tiers_by_source_reads_the_profiles():
    from tooling.models.cli import _tiers_by_source

    used = _tiers_by_source()
    assert "local-cpu/fast" in used[str(TINY)]  # the loader makes local paths absolute
    assert "gpu/fast" in used["Qwen/Qwen2.5-1.5B-Instruct"]


# -- Hugging Face ------------------------------------------------------------------------

def _hf_cache(root: Path, repo_id: str, src: Path) -> Path:
    """The hub cache layout huggingface_hub writes: blobs by hash, snapshots of symlinks, refs."""
    commit = hashlib.sha1(repo_id.encode()).hexdigest()
    repo = root / f"models--{repo_id.replace('/', '--')}"
    snapshot = repo / "snapshots" / commit
    (repo / "blobs").mkdir(parents=True)
    snapshot.mkdir(parents=True)
    for f in src.iterdir():
        digest = hashlib.sha256(f.read_bytes()).hexdigest()
        shutil.copyfile(f, repo / "blobs" / digest)
        (snapshot / f.name).symlink_to(Path("../../blobs") / digest)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(commit)
    return snapshot


def test_hf_id_resolves_from_a_local_cache_offline(tmp_path, monkeypatch):
    snapshot = _hf_cache(tmp_path / "hub", "tierserve/tiny-fast", TINY)
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    got = resolve("tierserve/tiny-fast")
    assert (got.kind, got.cache_hit, Path(got.path)) == (SourceKind.HF, True, snapshot)
    assert got.version == snapshot.name
    _same_files(TINY, Path(got.path))
    from transformers import AutoConfig

    assert AutoConfig.from_pretrained(got.path).hidden_size == 128


def test_hf_id_not_cached_offline_names_the_id(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(hf.HFError) as err:
        resolve("tierserve/not-cached")
    message = str(err.value)
    assert "'tierserve/not-cached'" in message and str(tmp_path / "hub") in message
    assert "HF_HUB_OFFLINE=1" in message and "tierserve models pull tierserve/not-cached" in message


def test_hf_hub_unreachable_uses_the_cache_or_names_the_id(tmp_path, monkeypatch):
    snapshot = _hf_cache(tmp_path / "hub", "tierserve/tiny-fast", TINY)
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    monkeypatch.setenv("HF_ENDPOINT", f"http://127.0.0.1:{free_port()}")  # nothing listens
    assert Path(resolve("tierserve/tiny-fast").path) == snapshot
    with pytest.raises(hf.HFError, match="'tierserve/absent'.*cannot be reached"):
        resolve("tierserve/absent")


def test_building_an_s3_tier_touches_no_store(monkeypatch):
    """The graph is built (serve deploy, on the controller) before any replica exists: the
    s3:// source passes through as is and only the replica fetches it."""
    from app.config import load_config
    from app.graph import llm_config_for

    monkeypatch.setenv("AWS_ENDPOINT_URL_S3", f"http://127.0.0.1:{free_port()}")  # nothing listens
    fast = load_config("local-cpu").tier("fast").model_copy(update={"model_source": "s3://b/tiny-fast"})
    config = llm_config_for(fast)
    assert config.model_loading_config.model_source == "s3://b/tiny-fast"


def test_a_connection_cut_mid_response_is_retried_from_the_last_byte(s3_env, tmp_path, monkeypatch,
                                                                     caplog):
    from tests.moto_s3 import CuttingProxy

    uri = _uri(tmp_path)
    manifest = s3.push(TINY, uri)
    moto_port = int(s3_env["AWS_ENDPOINT_URL_S3"].rsplit(":", 1)[1])
    proxy = CuttingProxy(moto_port, cut_after=150 << 10, cuts=2)
    try:
        monkeypatch.setenv("AWS_ENDPOINT_URL_S3", f"http://127.0.0.1:{proxy.port}")
        caplog.set_level("WARNING", logger="ray.serve.tierserve.models")
        got = resolve(uri, settings=s3.TransferSettings(chunk_bytes=512 << 10, max_workers=2))
    finally:
        proxy.close()
    assert proxy.cut >= 1, "the proxy never cut a response"
    _same_files(TINY, Path(got.path))
    # Resumed from the last byte written: nothing fetched twice.
    assert got.fetched_bytes == manifest.total_bytes
    assert "retry 1 of 2" in caplog.text
