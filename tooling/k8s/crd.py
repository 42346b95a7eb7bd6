"""Validate custom resources against the real CRD openAPIV3Schema, the way an API server would.

The API server applies schema `default:`s before validating, prunes (or, with strict field
validation, rejects) unknown fields, and understands `nullable` and
`x-kubernetes-int-or-string`; a plain JSON-schema validator knows none of that, so the CRD
schema is translated here first. CEL rules (`x-kubernetes-validations`) cannot be evaluated
offline and are reported as skipped.
"""

from __future__ import annotations

import copy
import functools
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jsonschema
import yaml

from app.config.loader import REPO_ROOT

# Beside the checkout, in development and CI alike (see ../shared/README.md).
REFERENCE_DIR = REPO_ROOT.parent / "shared" / "reference"
CRD_FILES = {
    ("ray.io", "RayService"): "kuberay-v1.7.0/ray.io_rayservices.yaml",
    ("ray.io", "RayCluster"): "kuberay-v1.7.0/ray.io_rayclusters.yaml",
    ("monitoring.coreos.com", "PodMonitor"): "prometheus-operator/monitoring.coreos.com_podmonitors.yaml",
    ("monitoring.coreos.com", "ServiceMonitor"):
        "prometheus-operator/monitoring.coreos.com_servicemonitors.yaml",
    ("monitoring.coreos.com", "PrometheusRule"):
        "prometheus-operator/monitoring.coreos.com_prometheusrules.yaml",
}
INT32 = (-(2**31), 2**31 - 1)
INT64 = (-(2**63), 2**63 - 1)

# metadata is `type: object` with no properties in every CRD: the server checks it as ObjectMeta.
OBJECT_META = {
    "type": "object", "additionalProperties": False, "required": ["name"],
    "properties": {
        "name": {"type": "string", "pattern": r"^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$"},
        "namespace": {"type": "string"},
        "labels": {"type": "object", "additionalProperties": {"type": "string"}},
        "annotations": {"type": "object", "additionalProperties": {"type": "string"}},
        "finalizers": {"type": "array", "items": {"type": "string"}},
        "generateName": {"type": "string"},
    },
}


@dataclass
class CrdReport:
    """Outcome for one object: errors fail it; skipped lists CEL rules not evaluated."""

    kind: str
    name: str
    errors: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)


def is_custom(api_version: str) -> bool:
    return api_version.split("/")[0] in {group for group, _ in CRD_FILES}


@functools.cache
def crd_schema(group: str, kind: str, version: str = "v1",
               reference_dir: Path = REFERENCE_DIR) -> dict[str, Any]:
    """The served version's openAPIV3Schema from the reference CRD file."""
    try:
        rel = CRD_FILES[(group, kind)]
    except KeyError:
        raise LookupError(f"no reference CRD for {group}/{kind}") from None
    path = reference_dir / rel
    if not path.is_file():
        raise FileNotFoundError(f"{path}: reference CRD missing (expected ../shared/reference/)")
    crd = yaml.safe_load(path.read_text())
    for ver in crd["spec"]["versions"]:
        if ver["name"] == version and ver.get("served", True):
            return ver["schema"]["openAPIV3Schema"]
    raise LookupError(f"{path}: no served version {version}")


def apply_defaults(value: Any, schema: dict[str, Any]) -> Any:
    """Fill in `default:`s as the API server does before validating (returns a copy)."""
    if isinstance(value, dict):
        out = dict(value)
        for key, sub in (schema.get("properties") or {}).items():
            if "default" in sub and (key not in out or (out[key] is None and not sub.get("nullable"))):
                out[key] = copy.deepcopy(sub["default"])
            if key in out:
                out[key] = apply_defaults(out[key], sub)
        extra = schema.get("additionalProperties")
        if isinstance(extra, dict):
            for key in out.keys() - (schema.get("properties") or {}).keys():
                out[key] = apply_defaults(out[key], extra)
        return out
    if isinstance(value, list) and isinstance(schema.get("items"), dict):
        return [apply_defaults(item, schema["items"]) for item in value]
    return value


def to_json_schema(node: dict[str, Any], path: str, skipped: list[str]) -> dict[str, Any]:
    """Translate a structural CRD schema node to strict JSON Schema."""
    out: dict[str, Any] = {}
    for key, value in node.items():
        if key == "properties":
            out[key] = {k: to_json_schema(v, f"{path}.{k}", skipped) for k, v in value.items()}
        elif key == "items" and isinstance(value, dict):
            out[key] = to_json_schema(value, f"{path}[]", skipped)
        elif key == "additionalProperties" and isinstance(value, dict):
            out[key] = to_json_schema(value, f"{path}{{}}", skipped)
        elif key == "anyOf" or key == "allOf" or key == "oneOf":
            out[key] = [to_json_schema(v, path, skipped) for v in value]
        elif key == "x-kubernetes-validations":
            skipped += [f"{path or '.'}: CEL rule not evaluated offline: {r['rule']}" for r in value]
        elif key == "default" or key.startswith("x-kubernetes-") or key == "description":
            continue
        else:
            out[key] = value
    if node.get("x-kubernetes-int-or-string"):
        out.pop("type", None)
        out.setdefault("anyOf", [{"type": "integer"}, {"type": "string"}])
    fmt = node.get("format")
    if out.get("type") == "integer" and fmt in ("int32", "int64"):
        lo, hi = INT32 if fmt == "int32" else INT64
        out["minimum"], out["maximum"] = max(out.get("minimum", lo), lo), min(out.get("maximum", hi), hi)
    is_object = node.get("type") == "object" or "properties" in node
    if is_object and not node.get("x-kubernetes-preserve-unknown-fields"):
        out.setdefault("additionalProperties", False)  # unknown fields are rejected
    if node.get("x-kubernetes-list-type") == "set":
        out["uniqueItems"] = True
    if node.get("x-kubernetes-list-type") == "map" and node.get("x-kubernetes-list-map-keys"):
        out["x-map-keys"] = node["x-kubernetes-list-map-keys"]
    if node.get("nullable"):
        out = {"anyOf": [{"type": "null"}, out]}
    return out


def _map_keys(validator: Any, keys: list[str], instance: Any, schema: Any) -> Iterator[Any]:
    """x-kubernetes-list-type: map — no two items share the same key tuple."""
    if not isinstance(instance, list):
        return
    seen: set[tuple[Any, ...]] = set()
    for item in instance:
        if isinstance(item, dict):
            tup = tuple(repr(item.get(k)) for k in keys)
            if tup in seen:
                key = dict(zip(keys, tup, strict=True))
                yield jsonschema.ValidationError(f"duplicate list-map key {key}")
            seen.add(tup)


_Validator = jsonschema.validators.extend(jsonschema.Draft202012Validator, {"x-map-keys": _map_keys})


@functools.cache
def _compiled(group: str, kind: str, version: str) -> tuple[Any, dict[str, Any], tuple[str, ...]]:
    raw = crd_schema(group, kind, version)
    skipped: list[str] = []
    schema = to_json_schema(raw, "", skipped)
    schema["properties"]["metadata"] = OBJECT_META
    return _Validator(schema), raw, tuple(skipped)


def _where(err: jsonschema.ValidationError) -> str:
    return "." + ".".join(str(p) for p in err.absolute_path) if err.absolute_path else "."


def validate_custom(obj: dict[str, Any]) -> CrdReport:
    """Defaults first, then the strict schema; every error says where."""
    group, _, version = obj.get("apiVersion", "").rpartition("/")
    kind = obj.get("kind", "?")
    report = CrdReport(kind=kind, name=(obj.get("metadata") or {}).get("name", "?"))
    try:
        validator, raw, skipped = _compiled(group, kind, version)
    except (LookupError, FileNotFoundError) as exc:
        report.errors.append(str(exc))
        return report
    report.skipped = list(skipped)
    defaulted = apply_defaults(obj, raw)
    for err in sorted(validator.iter_errors(defaulted), key=lambda e: list(e.absolute_path)):
        report.errors.append(f"{_where(err)}: {_best(err).message}")
    return report


def _best(err: jsonschema.ValidationError) -> jsonschema.ValidationError:
    """For anyOf (nullable, int-or-string), the deepest sub-error explains best."""
    return jsonschema.exceptions.best_match(err.context) if err.context else err
