"""A wrong or missing Ray auth token is one line that says what to do, never a traceback."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from tooling.local_cluster import StackError, engine_env, run_ray_cli

pytestmark = pytest.mark.e2e

SERVE = str(Path(sys.executable).with_name("serve"))


def _serve_status(tierserve_stack, **env: str) -> None:
    run_ray_cli([SERVE, "status", "--address", tierserve_stack.dashboard_url],
                {**engine_env(), "RAY_AUTH_MODE": "token", **env}, "serve status")


def test_the_right_token_is_accepted(tierserve_stack) -> None:
    _serve_status(tierserve_stack)


def test_a_wrong_token_is_one_line_naming_the_token_file(tierserve_stack, tmp_path) -> None:
    wrong = tmp_path / "auth_token"
    wrong.write_text("0" * 32)
    with pytest.raises(StackError) as caught:
        _serve_status(tierserve_stack, RAY_AUTH_TOKEN_PATH=str(wrong))
    message = str(caught.value)
    assert "refused the auth token" in message and str(wrong) in message
    assert "\n" not in message and "Traceback" not in message


def test_a_missing_token_is_one_line_naming_where_it_belongs(tierserve_stack, tmp_path) -> None:
    missing = tmp_path / "none"
    with pytest.raises(StackError) as caught:
        _serve_status(tierserve_stack, RAY_AUTH_TOKEN_PATH=str(missing))
    message = str(caught.value)
    assert "no token at" in message and str(missing) in message and "\n" not in message
