"""The prompt bank: `loadtests/prompts.jsonl`, replaceable with `--prompts FILE`.

Each line: {"text": "...", "kind": "easy"|"hard", "repeat": N (optional)}.
`repeat` multiplies the text, so a >1500-token prompt fits on one line.
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass
from pathlib import Path

DEFAULT_PROMPTS = Path(__file__).with_name("prompts.jsonl")
PROMPTS_ENV = "TIERSERVE_LOADTEST_PROMPTS"


@dataclass(frozen=True)
class PromptBank:
    easy: tuple[str, ...]
    hard: tuple[str, ...]

    @classmethod
    def load(cls, path: Path = DEFAULT_PROMPTS) -> PromptBank:
        easy: list[str] = []
        hard: list[str] = []
        for n, line in enumerate(path.read_text().splitlines(), start=1):
            if not line.strip():
                continue
            item = json.loads(line)
            text = " ".join([item["text"]] * int(item.get("repeat", 1)))
            kind = item.get("kind", "easy")
            if kind not in ("easy", "hard"):
                raise ValueError(f"{path}:{n}: kind must be easy or hard, got {kind!r}")
            (hard if kind == "hard" else easy).append(text)
        if not easy and not hard:
            raise ValueError(f"{path}: no prompts")
        return cls(tuple(easy), tuple(hard))

    def pick(self, rng: random.Random, hard_share: float) -> tuple[str, str]:
        """(kind, text); falls back to the other kind when one is empty."""
        want_hard = rng.random() < hard_share
        pool, kind = (self.hard, "hard") if want_hard and self.hard else (self.easy, "easy")
        if not pool:
            pool, kind = self.hard, "hard"
        return kind, rng.choice(pool)
