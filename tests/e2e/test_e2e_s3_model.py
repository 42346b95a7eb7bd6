"""End to end: a tier whose model_source is s3:// on a real S3-compatible server (moto on
loopback) downloads its model inside the replica's start-up and serves real tokens.

It runs as a second Serve application on the session's cluster and is deleted afterwards.
The profile is the shipped local-cpu one with the fast tier pointed at the bucket; the
endpoint and (dummy) credentials reach the replica through the tier's env.
"""

from __future__ import annotations

import re
import shutil
import time
import urllib.request
from pathlib import Path

import pytest
import yaml

from app.protocol.internal import TierCall, TierError, TierFinal
from tests.moto_s3 import moto_s3

pytestmark = pytest.mark.e2e

REPO = Path(__file__).resolve().parents[2]
APP = "s3tier"


def _profile_with_s3_tier(config_dir: Path, uri: str, env: dict[str, str]) -> None:
    """configs/ copied, plus profile local-s3: local-cpu with its fast tier read from `uri`."""
    shutil.copytree(REPO / "configs", config_dir)
    doc = yaml.safe_load((config_dir / "profiles" / "local-cpu.yaml").read_text())
    fast = next(t for t in doc["tiers"] if t["name"] == "fast")
    fast.update(name="s3fast", served_model_name="tiny-fast-s3", model_source=uri,
                env={**fast["env"], **env})
    doc["tiers"] = [fast]
    doc["routing"] = {**doc.get("routing", {}), "default_tier": "s3fast", "weak_tier": "s3fast",
                      "strong_tier": "s3fast", "rules": [], "target_shares": None}
    (config_dir / "profiles" / "local-s3.yaml").write_text(yaml.safe_dump(doc, sort_keys=False))


def _metric(ports: list[int], name: str, tier: str) -> float | None:
    for port in ports:
        text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10).read().decode()
        for line in text.splitlines():
            if line.startswith(name) and f'tier="{tier}"' in line:
                return float(line.rsplit(" ", 1)[1])
    return None


def test_tier_from_s3_downloads_at_start_up_and_serves_tokens(tierserve_stack, tmp_path, monkeypatch):
    from ray import serve

    from app.config import load_config
    from app.graph import build_tier
    from app.models import s3

    uri = "s3://tierserve-e2e/models/tiny-fast"
    cache = tmp_path / "model-cache"
    with moto_s3() as env:
        for key, value in env.items():
            monkeypatch.setenv(key, value)
        s3.client().create_bucket(Bucket="tierserve-e2e")
        manifest = s3.push(REPO / "models" / "tiny-fast", uri)

        monkeypatch.setenv("TIERSERVE_CONFIG_DIR", str(tmp_path / "configs"))
        _profile_with_s3_tier(tmp_path / "configs", uri, {**env, "TIERSERVE_MODEL_CACHE": str(cache)})
        tier = load_config("local-s3").tier("s3fast")
        assert tier.model_source == uri
        try:
            # Blocks until the replica is ready: download, engine start and warm-up generation.
            serve.run(build_tier(tier), name=APP, route_prefix=None)
            handle = serve.get_deployment_handle(tier.deployment_name, app_name=APP)
            call = TierCall(request_id="s3-e2e", endpoint="completion",
                            body={"model": tier.served_model_name, "prompt": "Hello from S3",
                                  "max_tokens": 8, "ignore_eos": True})
            items = list(handle.options(stream=True).generate.remote(call))
            assert not [i for i in items if isinstance(i, TierError)], items
            final = next(i for i in items if isinstance(i, TierFinal))
            assert final.body["usage"]["completion_tokens"] == 8
            assert final.body["choices"][0]["text"]
            assert final.body["model"] == "tiny-fast-s3"

            # The replica pulled the model into the cache it was given, verified, in one piece.
            entries = list(cache.glob(f"*/{manifest.version}"))
            assert len(entries) == 1 and (entries[0] / "model.safetensors").is_file()
            assert not (cache / ".staging").exists() or not any((cache / ".staging").iterdir())

            # Its log tells the story: fetch, progress, verified download with size and time.
            logs = "\n".join(p.read_text(errors="replace")
                             for p in tierserve_stack.log_dir.glob(f"replica_{APP}_*.log"))
            assert f"fetching model {uri} (s3)" in logs
            assert re.search(rf"pull {re.escape(uri)}: 100% \(0\.9/0\.9 MB\)", logs), logs[-3000:]
            assert re.search(rf"model {re.escape(uri)} version {manifest.version} downloaded and "
                             r"verified: 0\.9 MB in [0-9.]+s", logs), logs[-3000:]

            # And its metrics reach Ray's metrics port (exported every few seconds).
            deadline, fetched = time.monotonic() + 90, None
            while fetched is None and time.monotonic() < deadline:
                fetched = _metric(tierserve_stack.metrics_ports,
                                  "ray_tierserve_model_fetched_bytes_total", "s3fast")
                time.sleep(2)
            assert fetched == manifest.total_bytes
        finally:
            serve.delete(APP)
