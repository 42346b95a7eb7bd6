"""Offline validation of a rendered chart: Helm lint, built-in kinds, CRDs, consistency.

No API server runs here, so each check is the closest offline equivalent: built-in kinds
against kubernetes-validate's strict schemas for a pinned Kubernetes version (a missing
schema is a failure, never a pass), custom resources against the real CRDs (tooling.k8s.crd).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tooling.k8s import consistency, crd
from tooling.k8s.render import CHART_DIR, KUBE_VERSION, Rendered


@dataclass
class Report:
    errors: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    passed: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.errors


def _label(obj: dict[str, Any]) -> str:
    return f"{obj.get('kind', '?')}/{(obj.get('metadata') or {}).get('name', '?')}"


def validate_builtin(obj: dict[str, Any], kube_version: str = KUBE_VERSION) -> list[str]:
    """kubernetes-validate --strict for one object; an unknown kind is an error."""
    import kubernetes_validate as kv

    try:
        kv.validate(obj, kube_version, strict=True)
    except kv.ValidationError as exc:
        where = "." + ".".join(str(p) for p in exc.path) if exc.path else "."
        return [f"{where}: {exc.message} (Kubernetes {exc.version}, strict)"]
    except kv.SchemaNotFoundError as exc:
        return [f"no schema: {exc.message}"]
    return []


def validate_objects(objects: list[dict[str, Any]], kube_version: str = KUBE_VERSION) -> Report:
    report = Report()
    for obj in objects:
        label = _label(obj)
        if crd.is_custom(obj.get("apiVersion", "")):
            result = crd.validate_custom(obj)
            errors = result.errors
            report.skipped += [f"{label}: {s}" for s in result.skipped]
        else:
            errors = validate_builtin(obj, kube_version)
        report.errors += [f"{label}: {e}" for e in errors]
        if not errors:
            report.passed.append(label)
    return report


def lint_chart(values: dict[str, Any], chart_dir: Path = CHART_DIR,
               kube_version: str = KUBE_VERSION, namespace: str = "tierserve") -> list[str]:
    """`helm lint --strict --kube-version` through Helm's library; warnings count as errors."""
    import helm_python as helm

    result = helm.lint(chart_dir, values, strict=True, namespace=namespace,
                       kube_version=f"v{kube_version}")
    problems = [f"lint {m['path']}: {m['error']}" for m in result.get("messages", [])
                if m.get("severity", 0) >= 2]
    return problems + [f"lint: {e}" for e in result.get("errors") or []]


def validate_rendered(rendered: Rendered, *, lint: bool = True,
                      kube_version: str = KUBE_VERSION) -> Report:
    """Every check this module knows, on one render."""
    report = validate_objects(rendered.objects, kube_version)
    if lint:
        # Lint the exact values the render used (user values plus `generated`).
        report.errors += lint_chart(rendered.values, kube_version=kube_version)
    report.errors += [f"consistency: {e}" for e in consistency.check(rendered.objects, rendered.config)]
    return report
