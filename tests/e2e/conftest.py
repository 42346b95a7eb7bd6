"""Everything under tests/e2e/ runs against real parts (a Ray cluster with vLLM on the CPU,
Redis, PostgreSQL, Chromium...): marked `e2e` by its place in the tree, so `-m "not e2e"`
(the fast lane) leaves it out. The session stack and other fixtures live in tests/conftest.py."""

from __future__ import annotations

from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent


@pytest.hookimpl(tryfirst=True)  # before pytest's own -m deselection reads the markers
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if HERE in item.path.parents:
            item.add_marker(pytest.mark.e2e)
