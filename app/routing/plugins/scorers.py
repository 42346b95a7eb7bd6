"""The learned scorer as a plugin: the artifact `routing.learned.artifact` names (or
`params.artifact`), either model (hand features or the embedding scorer)."""

from __future__ import annotations

import hashlib
from pathlib import Path

from app.config.loader import REPO_ROOT
from app.routing.plugin import Context, NoParams, ScorerPlugin, Setup
from app.routing.scorer import ComplexityScorer, load_scorer


class LearnedParams(NoParams):
    artifact: str | None = None  # relative to the repo root; default routing.learned.artifact


def scorer_version(name: str, content: bytes) -> str:
    """Artifact name @ the first 12 hex digits of its sha256: what decision logs record."""
    return f"{name}@{hashlib.sha256(content).hexdigest()[:12]}"


class LearnedScore(ScorerPlugin):
    Params = LearnedParams

    def __init__(self, setup: Setup) -> None:
        super().__init__(setup)
        assert isinstance(setup.params, LearnedParams)
        if setup.scorer is not None:
            self._scorer: ComplexityScorer = setup.scorer
            dumps = getattr(setup.scorer, "dumps", None)
            self.version = (scorer_version("in-memory", dumps().encode()) if callable(dumps)
                            else type(setup.scorer).__name__)
            return
        path = REPO_ROOT / (setup.params.artifact or setup.config.routing.learned.artifact)
        self._scorer = load_scorer(path)
        self.version = scorer_version(Path(path).name, Path(path).read_bytes())

    def score(self, ctx: Context) -> float | None:
        return self._scorer.score(ctx.features)
