"""The router-eval data (RouteLLM's per-prompt correctness of a weak and a strong model) and its split.

Layout of a data dir: `mmlu/mmlu_<subject>.csv` and `gsm8k/*.csv`, each with
`prompt` and one boolean column per model, plus optional
`*/contaminated_prompts.jsonl` whose `eval_prompt`s are dropped.
"""

from __future__ import annotations

import csv
import hashlib
import json
import random
from dataclasses import dataclass
from pathlib import Path

WEAK_MODEL = "mistralai/Mixtral-8x7B-Instruct-v0.1"
STRONG_MODEL = "gpt-4-1106-preview"
GSM8K = "gsm8k"
REPO_ROOT = Path(__file__).resolve().parents[3]
DEFAULT_DATA_DIR = REPO_ROOT.parent / "shared" / "data" / "router-eval"

csv.field_size_limit(10_000_000)  # GSM8K rows carry whole model responses


@dataclass(frozen=True)
class Row:
    source: str  # "mmlu" or "gsm8k"
    group: str  # MMLU subject, or "gsm8k"
    prompt: str
    weak_ok: bool
    strong_ok: bool

    @property
    def needs_strong(self) -> bool:
        """The training label: only the strong model gets it right."""
        return self.strong_ok and not self.weak_ok

    @property
    def digest(self) -> str:
        return prompt_digest(self.prompt)


def prompt_digest(prompt: str) -> str:
    return hashlib.blake2b(prompt.encode("utf-8"), digest_size=6).hexdigest()


def _contaminated(folder: Path) -> set[str]:
    path = folder / "contaminated_prompts.jsonl"
    if not path.is_file():
        return set()
    lines = path.read_text(encoding="utf-8").splitlines()
    return {json.loads(line)["eval_prompt"] for line in lines if line.strip()}


def _read_csv(path: Path, source: str, group: str, drop: set[str]) -> list[Row]:
    with path.open(newline="", encoding="utf-8") as fh:
        reader = csv.DictReader(fh)
        cols = reader.fieldnames or []
        # By model name where present; otherwise the first two columns after `prompt`.
        weak = WEAK_MODEL if WEAK_MODEL in cols else cols[1]
        strong = STRONG_MODEL if STRONG_MODEL in cols else cols[2]
        return [Row(source, group, r["prompt"], r[weak] == "True", r[strong] == "True")
                for r in reader if r["prompt"] not in drop]


def load_rows(data_dir: Path) -> list[Row]:
    """All rows of a data dir, contaminated prompts dropped, in a stable order."""
    if not data_dir.is_dir():
        raise FileNotFoundError(f"{data_dir}: no such data directory")
    rows: list[Row] = []
    mmlu = data_dir / "mmlu"
    drop = _contaminated(mmlu)
    for path in sorted(mmlu.glob("mmlu_*.csv")):
        rows += _read_csv(path, "mmlu", path.stem.removeprefix("mmlu_"), drop)
    gsm = data_dir / GSM8K
    drop = _contaminated(gsm)
    for path in sorted(gsm.glob("*.csv")):
        rows += _read_csv(path, GSM8K, GSM8K, drop)
    if not rows:
        raise FileNotFoundError(f"{data_dir}: no mmlu/*.csv or gsm8k/*.csv files")
    return rows


@dataclass(frozen=True)
class Split:
    train: list[Row]
    test: list[Row]


def split_rows(rows: list[Row], share: float, seed: int) -> Split:
    """Hold out `share` of the MMLU subjects (whole subjects) and of the GSM8K rows, seeded."""
    rng = random.Random(seed)
    subjects = sorted({r.group for r in rows if r.source != GSM8K})
    rng.shuffle(subjects)
    held = set(subjects[: round(share * len(subjects))])
    gsm = [r.digest for r in rows if r.source == GSM8K]
    rng.shuffle(gsm)
    held_gsm = set(gsm[: round(share * len(gsm))])
    test = [r for r in rows if r.group in held or r.digest in held_gsm]
    train = [r for r in rows if not (r.group in held or r.digest in held_gsm)]
    return Split(train, test)


def unseen(rows: list[Row], train_subjects: set[str], train_digests: set[str]) -> list[Row]:
    """Rows a model trained on (`train_subjects`, GSM8K `train_digests`) never saw."""
    return [r for r in rows if r.group not in train_subjects and r.digest not in train_digests]


def kfold_by_subject(rows: list[Row], k: int, seed: int) -> list[Split]:
    """k folds: each tests on whole MMLU subjects (about 1/k of them) and 1/k of the GSM8K
    rows, and trains on the rest; every subject and GSM8K row is tested exactly once."""
    if k < 2:
        raise ValueError("k-fold needs k >= 2")
    rng = random.Random(seed)
    subjects = sorted({r.group for r in rows if r.source != GSM8K})
    rng.shuffle(subjects)
    gsm = sorted({r.digest for r in rows if r.source == GSM8K})
    rng.shuffle(gsm)
    folds = []
    for i in range(k):
        held = set(subjects[i::k]) | set(gsm[i::k])
        folds.append(Split(train=[r for r in rows if r.group not in held and r.digest not in held],
                           test=[r for r in rows if r.group in held or r.digest in held]))
    return folds
