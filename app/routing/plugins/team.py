"""A scorer on who is asking: the docs' worked example of adding a scorer (docs/routing.md).

    scorers: [learned, {name: "app.routing.plugins.team:TeamScore", params: {teams: {research: 1.0}}}]

Requests from a listed team (the API key's team, else OpenAI's `user` field) get that
team's score; everyone else abstains, leaving the decision to the other scorers.
"""

from __future__ import annotations

from pydantic import Field

from app.routing.plugin import Context, NoParams, ScorerPlugin, Setup


class TeamParams(NoParams):
    teams: dict[str, float] = Field(default_factory=dict)  # team or user -> score in [0, 1]


class TeamScore(ScorerPlugin):
    Params = TeamParams

    def __init__(self, setup: Setup) -> None:
        super().__init__(setup)
        assert isinstance(setup.params, TeamParams)
        self._teams = setup.params.teams

    def score(self, ctx: Context) -> float | None:
        who = ctx.request.team or ctx.request.user
        return self._teams.get(who) if who else None
