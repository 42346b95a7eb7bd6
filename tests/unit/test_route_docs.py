"""docs/routing.md's worked example (a scorer on the team/user field) runs as written."""

from __future__ import annotations

import asyncio
import re
import sys
from pathlib import Path

import pytest
import yaml

from app.config.loader import REPO_ROOT
from app.routing.assemble import build_pipeline
from tests.route_helpers import FixedScorer, request, two_tier_config

DOC = (REPO_ROOT / "docs" / "routing.md").read_text()
SECTION = DOC[DOC.index("### Adding a scorer"):]
SECTION = SECTION[: SECTION.index("\n### ", 5)]
CODE = re.search(r"```python\n(.*?)```", SECTION, re.S).group(1)
CONFIG = yaml.safe_load(re.search(r"```yaml\n(.*?)```", SECTION, re.S).group(1))


def _decide(plugins: dict, **req) -> tuple[str, float]:
    config = two_tier_config(plugins=plugins)  # threshold 0.5
    d = asyncio.run(build_pipeline(config, scorer=FixedScorer(0.2)).decide(request(**req)))
    return d.tier, d.score


def test_the_documented_class_is_the_shipped_one() -> None:
    assert CODE.strip() in (REPO_ROOT / "app" / "routing" / "plugins" / "team.py").read_text()


def test_the_documented_config_line_routes_the_team_up() -> None:
    plugins = CONFIG["plugins"]
    assert _decide(plugins, team="research") == ("reasoning", pytest.approx(0.6))
    assert _decide(plugins, user="someone") == ("fast", pytest.approx(0.2))


def test_the_documented_class_works_from_a_module_of_its_own(tmp_path: Path, monkeypatch) -> None:
    """One class in a user's own module + one config line: no edit to Tierserve."""
    header = ("from pydantic import Field\n\n"
              "from app.routing.plugin import Context, NoParams, ScorerPlugin, Setup\n\n\n")
    (tmp_path / "my_team_scorer.py").write_text(header + CODE)
    monkeypatch.syspath_prepend(str(tmp_path))
    plugins = yaml.safe_load(yaml.safe_dump(CONFIG["plugins"]).replace(
        "app.routing.plugins.team:TeamScore", "my_team_scorer:TeamScore"))
    try:
        assert _decide(plugins, team="research")[0] == "reasoning"
    finally:
        sys.modules.pop("my_team_scorer", None)
