"""Features the embedding scorer adds to the 28 hand features, all from the static table.

- Token fertility (tokens per word, share of words split into >= 3 / >= 4 tokens, the
  most-split word): a vocabulary-rarity cue that needs no word-frequency list.
- For multiple-choice prompts, how alike the options are to each other and to the
  question (cosine of their mean vectors): close options make a harder question.
- The prompt's mean token vector (256 wide) itself.

These describe shape and rarity rather than topic; in k-fold by subject they beat
the mean vector alone (see docs/routing.md).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np

from app.routing.embedding import StaticEmbedder

# "\nA. ...\nB. ...": the option layout of the training data (MMLU) and of most MCQ prompts.
_OPTION = re.compile(r"\n([A-D])[.)] ")

FERTILITY_NAMES = ("tokens_per_word", "share_words_3plus_tokens", "share_words_4plus_tokens",
                   "max_tokens_per_word")
OPTION_NAMES = ("has_option_block", "option_cos_mean", "option_cos_min", "option_cos_max",
                "stem_option_cos_max", "stem_option_cos_std")
EXTRA_NAMES = FERTILITY_NAMES + OPTION_NAMES


@dataclass(frozen=True, slots=True)
class EmbedFeatures:
    extra: tuple[float, ...]  # EXTRA_NAMES, in order
    mean: np.ndarray  # the prompt's mean token vector
    has_options: bool


def _unit(v: np.ndarray) -> np.ndarray:
    n = float(np.linalg.norm(v))
    return v / n if n > 1e-9 else v


def _option_features(text: str, emb: StaticEmbedder) -> tuple[float, ...]:
    parts = _OPTION.split(text)
    if len(parts) < 9:  # stem + 4 x (letter, body): fewer than four options is not a block
        return (0.0,) * len(OPTION_NAMES)
    stem = _unit(emb.mean_embedding(parts[0]))
    opts = np.array([_unit(emb.mean_embedding(parts[i + 1])) for i in range(1, 9, 2)])
    cos = opts @ opts.T
    pairs = cos[np.triu_indices(len(opts), 1)]
    to_stem = opts @ stem
    return (1.0, float(pairs.mean()), float(pairs.min()), float(pairs.max()),
            float(to_stem.max()), float(to_stem.std()))


def extract(text: str, emb: StaticEmbedder) -> EmbedFeatures:
    ids, per_word = emb.encode(text)
    if len(per_word):
        n = len(per_word)
        fert = (len(ids) / n, float(np.count_nonzero(per_word >= 3)) / n,
                float(np.count_nonzero(per_word >= 4)) / n, float(per_word.max()))
    else:
        fert = (0.0, 0.0, 0.0, 0.0)
    opts = _option_features(text, emb)
    return EmbedFeatures(fert + opts, emb.mean_of(ids), opts[0] > 0)
