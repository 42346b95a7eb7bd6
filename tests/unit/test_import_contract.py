"""The import contract in pyproject.toml (import-linter) holds on this tree, and breaks when a
copy of the tree gets a deliberate violation: runtime importing tooling, a lower layer importing
a higher one, anything importing the `tierserve` command."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import importlinter
import pytest

REPO = next(p for p in Path(__file__).resolve().parents if (p / "pyproject.toml").exists())
LIBS = str(Path(importlinter.__file__).resolve().parents[1])  # the site-packages that has it
PACKAGES = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["importlinter"]["root_packages"]


def _python_only(directory: str, names: list[str]) -> list[str]:
    return [n for n in names
            if n == "__pycache__" or not (n.endswith(".py") or (Path(directory) / n).is_dir())]


def _copy_tree(dst: Path) -> Path:
    for package in PACKAGES:
        shutil.copytree(REPO / package, dst / package, ignore=_python_only)
    shutil.copy(REPO / "pyproject.toml", dst / "pyproject.toml")
    return dst


def _lint_imports(root: Path) -> subprocess.CompletedProcess[str]:
    # `-S`: no .pth files, so the editable install of this checkout cannot add its own `app/`
    # to the namespace package; the copy and the venv's libraries are all the path there is.
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(root), LIBS])}
    main = "import sys; from importlinter.cli import lint_imports_command; sys.exit(lint_imports_command())"
    return subprocess.run([sys.executable, "-S", "-c", main, "--no-cache", "--no-logo"], cwd=root,
                          env=env, capture_output=True, text=True, timeout=300)


def _append(path: Path, code: str) -> None:
    path.write_text(path.read_text() + "\n" + code + "\n")


def test_contract_holds_on_this_tree(tmp_path):
    result = _lint_imports(_copy_tree(tmp_path))
    assert result.returncode == 0, result.stdout + result.stderr
    assert " 0 broken." in result.stdout


@pytest.mark.parametrize(("module", "code", "broken"), [
    # A runtime module importing tooling, even inside a function (what __import__ used to hide).
    ("app/config/schema.py", "def _oops():\n    from tooling.k8s import render  # noqa\n",
     "What runs inside the Serve graph never imports tooling"),
    ("deployments/tier.py", "import loadtests.cli  # noqa\n",
     "What runs inside the Serve graph never imports tooling"),
    # Runtime reaching tooling indirectly: deployments -> app.http -> tooling.observability.
    ("app/http/errors.py", "import tooling.observability.rules  # noqa\n",
     "What runs inside the Serve graph never imports tooling"),
    # A lower layer importing a higher one.
    ("app/protocol/openai.py", "import deployments.metrics  # noqa\n", "Runtime layers point one way"),
    ("app/config/loader.py", "import app.http.errors  # noqa\n", "Runtime layers point one way"),
    # Tooling importing the command that sits on top of it.
    ("loadtests/cli.py", "import tooling.cli  # noqa\n", "Nothing imports the tierserve command"),
])
def test_contract_breaks_on_a_deliberate_violation(tmp_path, module, code, broken):
    root = _copy_tree(tmp_path)
    _append(root / module, code)
    result = _lint_imports(root)
    assert result.returncode == 1, result.stdout + result.stderr
    out = " ".join(result.stdout.split())  # contract names wrap on narrow terminals
    assert f"{broken}" in out and "BROKEN" in out, out
    offender = module.removesuffix(".py").replace("/", ".")
    assert offender in out, out  # the report names the importing module
