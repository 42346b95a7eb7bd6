"""`tierserve keys ...` and `tierserve usage` on a real SQLite file."""

from __future__ import annotations

import json

import pytest

from app.keys.models import UsageEvent
from app.keys.store import KeyStore
from tooling.cli import main


def run(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out = capsys.readouterr()
    return code, out.out, out.err


def test_keys_lifecycle_and_usage(tmp_path, capsys):
    db = f"sqlite:///{tmp_path / 'keys.db'}"
    code, out, _ = run(capsys, "keys", "create", "--team", "search", "--name", "ranker",
                       "--tiers", "fast", "--rpm", "60", "--budget-usd", "5", "--period", "day",
                       "--expires", "30d", "--db", db)
    assert code == 0 and "shown once" in out
    key = out.rsplit(": ", 1)[1].strip()
    assert key.startswith("tsk-")
    code, out, _ = run(capsys, "keys", "list", "--db", db, "--json")
    [info] = json.loads(out)
    assert (info["team"], info["tiers"], info["rpm"], info["budget_usd"]) == ("search", ["fast"], 60, 5.0)
    assert key not in out and info["expires_at"] is not None
    code, out, _ = run(capsys, "keys", "show", info["prefix"], "--db", db)
    assert code == 0 and info["id"] in out and key not in out
    code, out, _ = run(capsys, "keys", "rotate", info["id"], "--db", db, "--json")
    new = json.loads(out)["key"]
    store = KeyStore(db)
    assert store.lookup(key) is None and store.lookup(new).id == info["id"]
    store.record_usage([UsageEvent(ts=1e9 + 10, key_id=info["id"], team="search", tier=t,
                                   endpoint="chat", status=200, prompt_tokens=500,
                                   completion_tokens=500, cost_usd=c, strongest_cost_usd=1.0)
                        for t, c in (("fast", 0.1), ("reasoning", 1.0))])
    store.close()
    code, out, _ = run(capsys, "usage", "--team", "search", "--since", "1000000000", "--db", db)
    assert code == 0 and "routing saved $0.900000 (45.0%)" in out
    code, out, _ = run(capsys, "keys", "revoke", info["id"], "--db", db)
    assert code == 0 and "revoked" in out
    code, out, _ = run(capsys, "keys", "list", "--db", db)
    assert "no keys" in out
    code, _, err = run(capsys, "keys", "rotate", info["id"], "--db", db)
    assert code == 1 and "no such key" in err


@pytest.mark.parametrize("argv, message", [
    (["--tiers", "fast,turbo"], "unknown tier"),
    (["--budget-tokens", "0"], "greater than 0"),
])
def test_create_rejects_bad_input(tmp_path, capsys, argv, message):
    code, _, err = run(capsys, "keys", "create", "--team", "t", "--name", "n", *argv,
                       "--db", f"sqlite:///{tmp_path / 'k.db'}")
    assert code == 2 and message in err
