"""Everything under tests/e2e/ runs against real parts (a Ray cluster with vLLM on the CPU,
Redis, PostgreSQL, Chromium...): marked `e2e` by its place in the tree, so `-m "not e2e"`
(the fast lane) leaves it out. The session stack and other fixtures live in tests/conftest.py."""

from __future__ import annotations

from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
SESSION_STACK = "tierserve_stack"  # tests/conftest.py's shared stack fixture


@pytest.hookimpl(tryfirst=True)  # before pytest's own -m deselection reads the markers
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if HERE in item.path.parents:
            item.add_marker(pytest.mark.e2e)
    # Modules that start their own stack (a multi-node cluster, three tiers...) run first, one
    # after another, before the session stack exists: never two stacks' engines on the 2 cores
    # and in the 24 GiB at once (with the session stack's two engines beside the elastic
    # cluster's three, a fast replica was lost before its first test in CI). Stable: each
    # module keeps its order.
    items.sort(key=lambda item: SESSION_STACK in getattr(item, "fixturenames", ()))
