"""tests/unit/: tests of logic that need no Ray cluster and no vLLM engine (they may start a
small real server of their own, such as Redis or PostgreSQL, on a free port). A test marked
`e2e` here is in the wrong place: collection fails and says where it belongs."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.servers import PG_BIN, PG_MISSING, postgres_server

HERE = Path(__file__).resolve().parent


@pytest.hookimpl(tryfirst=True)  # see every item, before any -m deselection
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    misplaced = [i.nodeid for i in items if HERE in i.path.parents and i.get_closest_marker("e2e")]
    if misplaced:
        raise pytest.UsageError(f"end-to-end tests under tests/unit/ belong in tests/e2e/: {misplaced}")


@pytest.fixture(scope="module")
def pg():
    """A real PostgreSQL server (Debian's) for the module: (url, data dir)."""
    if PG_BIN is None:
        pytest.skip(PG_MISSING)
    with postgres_server() as server:
        yield server

