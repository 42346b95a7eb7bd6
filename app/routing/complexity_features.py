"""Topic-agnostic features of a prompt for the learned complexity scorer.

Everything here describes the *shape* of a request (length, numbers, operators,
multiple-choice structure, question words), never its topic: topic words
overfit the subjects seen in training. Cost is a few linear passes in C
(regexes, `bytes.translate`, `Counter`), about 0.3 ms for a 4k-token prompt.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Callable

# A multiple-choice option line: "A. ...", "(b) ...", "C) ...".
_OPTION = re.compile(r"^\s*\(?[A-Da-d][.)]\s", re.M)
_DIGITS = b"0123456789"
_OPERATORS = b"+-*/=^<>%$"
_UPPER = bytes(range(65, 91))
_ALL = bytes(range(256))
_LOWER = bytes(range(97, 123))
# Translation tables: letters (or digits) kept, every other byte becomes a space.
_LETTERS_ONLY = bytes(b if b in _LOWER else 32 for b in _ALL)
_DIGITS_ONLY = bytes(b if b in _DIGITS else 32 for b in _ALL)
# Deletion tables for counting one class of bytes.
_DELETE_NOT = {keep: _ALL.translate(None, keep) for keep in (_DIGITS, _OPERATORS, _UPPER, _LOWER)}

# Cue words, grouped; each group is one feature (log count in the prompt).
KEYWORDS: dict[str, frozenset[str]] = {
    "kw_quantity": frozenset(["calculate", "compute", "how", "many", "much", "total", "sum", "average",
        "percent", "percentage", "per", "each", "every", "remaining", "left", "rate", "ratio", "times",
        "twice", "half", "double", "triple"]),
    "kw_wh": frozenset(["which", "what", "who", "when", "where", "why"]),
    "kw_negation": frozenset(["not", "except", "false", "incorrect", "least", "never", "none"]),
    "kw_truth": frozenset(["true", "false", "statement", "statements", "valid", "invalid"]),
    "kw_logic": frozenset(["if", "then", "implies", "therefore", "premise", "conclusion", "argument"]),
    "kw_money": frozenset(["dollars", "dollar", "cents", "cost", "costs", "price", "pay", "paid",
        "sells", "buys"]),
    "kw_time": frozenset(["hour", "hours", "minute", "minutes", "day", "days", "week", "weeks", "month",
        "months", "year", "years"]),
    "kw_pronoun": frozenset(["he", "she", "they", "his", "her", "their", "him", "them"]),
    "kw_best": frozenset(["best", "most", "likely", "primarily", "following"]),
}


def _log(x: float) -> float:
    return math.log1p(x)


def _byte_count(data: bytes, keep: bytes) -> int:
    # `translate` with delete is a C loop: the bytes not in `keep` are dropped.
    return len(data.translate(None, _DELETE_NOT[keep]))


class _Parts:
    """One prompt split once into the pieces every feature reads."""

    __slots__ = ("text", "data", "lower", "stem", "options", "n_options", "n_words", "counts", "numbers")

    def __init__(self, text: str) -> None:
        self.text = text
        self.data = text.encode("utf-8", "ignore")
        found = list(_OPTION.finditer(text))
        self.n_options = len(found)
        cut = found[0].start() if len(found) >= 2 else len(text)
        self.stem, self.options = text[:cut], text[cut:]
        # Bytes, not str: `translate` and `split` on bytes are the cheapest passes Python has.
        self.lower = self.data.lower()
        words = self.lower.translate(_LETTERS_ONLY).split()
        self.n_words = len(words)
        self.counts = Counter(words)
        self.numbers = len(self.data.translate(_DIGITS_ONLY).split())


def _keyword(group: frozenset[str]) -> Callable[[_Parts], float]:
    encoded = tuple(w.encode() for w in group)
    return lambda p: _log(sum(p.counts[w] for w in encoded))


# Registry: name -> feature function. Order is the model's column order.
FEATURES: dict[str, Callable[[_Parts], float]] = {
    "log_chars": lambda p: _log(len(p.text)),
    "log_words": lambda p: _log(p.n_words),
    "log_stem_chars": lambda p: _log(len(p.stem)),
    "log_option_chars": lambda p: _log(len(p.options)),
    "has_options": lambda p: float(p.n_options >= 2),
    "log_mean_option_chars": lambda p: _log(len(p.options) / max(p.n_options, 1)),
    "log_numbers": lambda p: _log(p.numbers),
    "numbers_per_word": lambda p: p.numbers / (p.n_words + 1),
    "digit_share": lambda p: _byte_count(p.data, _DIGITS) / (len(p.data) + 1),
    "option_digit_share": lambda p: (_byte_count(p.options.encode("utf-8", "ignore"), _DIGITS)
                                     / (len(p.options) + 1)),
    "log_operators": lambda p: _log(_byte_count(p.data, _OPERATORS)),
    "operator_share": lambda p: _byte_count(p.data, _OPERATORS) / (len(p.data) + 1),
    "upper_share": lambda p: _byte_count(p.data, _UPPER) / (len(p.data) + 1),
    "log_lines": lambda p: _log(p.text.count("\n")),
    "log_sentences": lambda p: _log(p.text.count(". ") + p.text.count("? ")),
    "log_commas": lambda p: _log(p.text.count(",")),
    "question_marks": lambda p: min(float(p.text.count("?")), 5.0),
    "mean_word_len": lambda p: _byte_count(p.lower, _LOWER) / (p.n_words + 1),
    "type_token_ratio": lambda p: _log(len(p.counts)) / _log(p.n_words + 1),
    **{name: _keyword(group) for name, group in KEYWORDS.items()},
}
FEATURE_NAMES: tuple[str, ...] = tuple(FEATURES)


def extract(text: str) -> list[float]:
    """The feature vector of one prompt, in FEATURE_NAMES order."""
    parts = _Parts(text)
    return [fn(parts) for fn in FEATURES.values()]
