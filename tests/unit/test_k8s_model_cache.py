"""The chart's model cache volume, its env and S3 credentials, and the consistency check on them."""

from __future__ import annotations

import copy
import shutil
from pathlib import Path
from typing import Any

import pytest
import yaml

from tooling.k8s import consistency
from tooling.k8s.render import RenderError, render
from tooling.k8s.validate import validate_rendered

REPO = Path(__file__).resolve().parents[2]
S3_URI = "s3://tierserve-models/qwen2.5-1.5b-instruct"


def _rayservice(objects: list[dict[str, Any]]) -> dict[str, Any]:
    return next(o for o in objects if o["kind"] == "RayService")


def _tier_pod(objects: list[dict[str, Any]], tier: str) -> dict[str, Any]:
    groups = _rayservice(objects)["spec"]["rayClusterConfig"]["workerGroupSpecs"]
    return next(g for g in groups if g["groupName"] == f"tier-{tier}")["template"]["spec"]


@pytest.fixture
def s3_profile(tmp_path, monkeypatch) -> str:
    """The gpu profile with its fast tier read from S3 (configs/ copied, nothing shipped changes)."""
    shutil.copytree(REPO / "configs", tmp_path / "configs")
    path = tmp_path / "configs" / "profiles" / "gpu-s3.yaml"
    doc = yaml.safe_load((tmp_path / "configs" / "profiles" / "gpu.yaml").read_text())
    doc["tiers"][0]["model_source"] = S3_URI
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    monkeypatch.setenv("TIERSERVE_CONFIG_DIR", str(tmp_path / "configs"))
    return "gpu-s3"


def test_every_tier_pod_caches_models_on_its_own_volume():
    rendered = render([])
    assert validate_rendered(rendered, lint=False).ok
    for tier in rendered.config.tiers:
        pod = _tier_pod(rendered.objects, tier.name)
        container = pod["containers"][0]
        env = {e["name"]: e.get("value") for e in container["env"]}
        assert env["TIERSERVE_MODEL_CACHE"] == "/var/cache/tierserve/models"
        assert env["HF_HUB_CACHE"] == "/var/cache/tierserve/huggingface"
        assert {"name": "model-cache", "mountPath": "/var/cache/tierserve"} in container["volumeMounts"]
        volume = next(v for v in pod["volumes"] if v["name"] == "model-cache")
        assert volume["emptyDir"] == {"sizeLimit": "100Gi"}


@pytest.mark.parametrize("cache,kind", [
    ({"type": "ephemeral", "storageClassName": "fast-ssd", "sizeLimit": "200Gi"}, "ephemeral"),
    ({"type": "pvc", "claimName": "tierserve-models"}, "persistentVolumeClaim"),
])
def test_model_cache_kinds_render_and_validate(cache, kind):
    rendered = render([], extra_values={"tiers": {"reasoning": {"modelCache": cache}}})
    report = validate_rendered(rendered, lint=False)
    assert report.ok, report.errors
    volumes = _tier_pod(rendered.objects, "reasoning")["volumes"]
    volume = next(v for v in volumes if v["name"] == "model-cache")
    assert kind in volume
    if kind == "ephemeral":
        spec = volume["ephemeral"]["volumeClaimTemplate"]["spec"]
        assert (spec["storageClassName"], spec["resources"]["requests"]["storage"]) == ("fast-ssd", "200Gi")
    else:
        assert volume["persistentVolumeClaim"] == {"claimName": "tierserve-models"}
    fast = next(v for v in _tier_pod(rendered.objects, "fast")["volumes"] if v["name"] == "model-cache")
    assert "emptyDir" in fast  # the other tier keeps the default


def test_pvc_without_a_claim_and_unknown_kinds_are_refused():
    with pytest.raises(RenderError, match="tiers.fast.modelCache.claimName is required"):
        render([], extra_values={"tiers": {"fast": {"modelCache": {"type": "pvc"}}}})
    with pytest.raises(RenderError, match="modelCache"):
        render([], extra_values={"tierDefaults": {"modelCache": {"type": "hostPath"}}})


def test_s3_tier_needs_credentials_from_a_secret(s3_profile):
    rendered = render([], profile=s3_profile)
    errors = consistency.check(rendered.objects, rendered.config)
    assert errors == [f"tier-fast: model_source {S3_URI} but no AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY "
                      "from a Secret; set secrets.s3.name to the Secret that holds them"]

    rendered = render([], profile=s3_profile, extra_values={"secrets": {"s3": {
        "name": "tierserve-s3", "endpointUrl": "http://minio.storage:9000", "region": "us-east-1"}}})
    report = validate_rendered(rendered, lint=False)
    assert report.ok, report.errors
    env = {e["name"]: e for e in _tier_pod(rendered.objects, "fast")["containers"][0]["env"]}
    assert env["AWS_ACCESS_KEY_ID"]["valueFrom"]["secretKeyRef"] == {
        "name": "tierserve-s3", "key": "AWS_ACCESS_KEY_ID"}
    assert env["AWS_SECRET_ACCESS_KEY"]["valueFrom"]["secretKeyRef"]["name"] == "tierserve-s3"
    assert env["AWS_ENDPOINT_URL_S3"]["value"] == "http://minio.storage:9000"
    assert not [o for o in rendered.objects if o["kind"] == "Secret"]


def test_consistency_catches_a_missing_cache_volume_and_inlined_secrets():
    rendered = render([])
    config = rendered.config
    assert consistency.check_model_cache(_rayservice(rendered.objects), config) == []

    objects = copy.deepcopy(rendered.objects)
    pod = _tier_pod(objects, "fast")
    pod["containers"][0]["volumeMounts"] = [m for m in pod["containers"][0]["volumeMounts"]
                                            if m["name"] != "model-cache"]
    errors = consistency.check_model_cache(_rayservice(objects), config)
    assert "tier-fast: TIERSERVE_MODEL_CACHE=/var/cache/tierserve/models is on no mounted volume" in errors

    objects = copy.deepcopy(rendered.objects)
    pod = _tier_pod(objects, "fast")
    for env in pod["containers"][0]["env"]:
        if env["name"] == "HF_HUB_CACHE":
            env["value"] = "/dev/shm/hf"
    errors = consistency.check_model_cache(_rayservice(objects), config)
    assert any("HF_HUB_CACHE=/dev/shm/hf is on memory volume dshm" in e for e in errors), errors

    inlined = render([], extra_values={"extraEnv": [{"name": "AWS_SECRET_ACCESS_KEY", "value": "oops"}]})
    errors = consistency.check(inlined.objects, inlined.config)
    assert any("['AWS_SECRET_ACCESS_KEY'] set as plain values" in e for e in errors), errors
