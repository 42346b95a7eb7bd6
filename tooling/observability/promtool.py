"""Thin wrappers around Debian's `promtool` for checking rules and PromQL."""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from collections.abc import Iterable
from pathlib import Path

import yaml


def promtool_path() -> str | None:
    return shutil.which("promtool")


def run(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    binary = promtool_path()
    if binary is None:
        raise FileNotFoundError("promtool not found: apt-get install -y prometheus")
    return subprocess.run([binary, *args], cwd=cwd, capture_output=True, text=True, timeout=120)


def check_rules(*files: Path) -> subprocess.CompletedProcess[str]:
    return run("check", "rules", *map(str, files))


def _exprs_file(path: Path, exprs: list[str]) -> Path:
    groups = [{"name": f"expr-{i}", "rules": [{"record": "tierserve_parse:check", "expr": e}]}
              for i, e in enumerate(exprs)]
    path.write_text(yaml.safe_dump({"groups": groups}))
    return path


def check_exprs(exprs: Iterable[tuple[str, str]]) -> dict[str, str]:
    """Parse each PromQL expression by wrapping it into a recording rule.

    All in one file first (one promtool run); only if that fails, one file per
    expression so each error names its expression. Returns {where: error}.
    """
    items = list(exprs)
    with tempfile.TemporaryDirectory() as tmp:
        if check_rules(_exprs_file(Path(tmp) / "all.yaml", [e for _, e in items])).returncode == 0:
            return {}
        failures: dict[str, str] = {}
        for i, (where, expr) in enumerate(items):
            result = check_rules(_exprs_file(Path(tmp) / f"expr{i}.yaml", [expr]))
            if result.returncode != 0:
                failures[where] = (result.stdout + result.stderr).strip() + f"\nexpr: {expr}"
        return failures or {"(all)": "promtool rejected the combined file but no single expression"}


def strip_annotations(rules_doc: dict[str, object]) -> dict[str, object]:
    """The rules without annotations: promtool unit tests then pin labels, not prose."""
    groups = [{**g, "rules": [{k: v for k, v in r.items() if k != "annotations"} for r in g["rules"]]}
              for g in rules_doc["groups"]]  # type: ignore[index, union-attr, attr-defined]
    return {"groups": groups}
