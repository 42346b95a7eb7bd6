"""Mean static token embedding of a prompt, from the `wordllama` wheel's bundled table.

The wheel ships a 32k x 256 fp16 table (`weights/l2_supercat_256.safetensors`) and a
Llama-2 tokenizer (`tokenizers/l2_supercat_tokenizer_config.json`). We read both files
directly instead of `WordLlama.load()`: that looks in `tokenizer/` (the wheel has
`tokenizers/`), then tries a download, and importing the package calls
`logging.basicConfig` as a side effect. Nothing is downloaded here.

Speed: the tokenizer never merges across whitespace, so each whitespace-separated
word is tokenized once and its token ids cached; a 4k-token prompt is then dict
look-ups plus one gather-and-sum. Vectors are the same for train and serve because
both go through `mean_embedding`.
"""

from __future__ import annotations

import hashlib
import importlib.util
from functools import cached_property
from itertools import chain
from pathlib import Path

import numpy as np

PACKAGE = "wordllama"
WEIGHTS = "weights/l2_supercat_256.safetensors"
TOKENIZER = "tokenizers/l2_supercat_tokenizer_config.json"
DIM = 256
_CACHE_MAX = 200_000  # words; cleared when full (a few MB), so memory stays bounded


class EmbeddingUnavailable(RuntimeError):
    """The `wordllama` package (and so its embedding table) is not installed."""


def package_dir() -> Path:
    spec = importlib.util.find_spec(PACKAGE)  # locates the files without importing the package
    if spec is None or not spec.submodule_search_locations:
        raise EmbeddingUnavailable(f"`{PACKAGE}` is not installed: pip install 'wordllama==0.4.0.post1'")
    return Path(next(iter(spec.submodule_search_locations)))


class StaticEmbedder:
    """Mean of the prompt's token vectors (float32, DIM wide); zeros for an empty prompt."""

    def __init__(self, root: Path | None = None) -> None:
        root = root or package_dir()
        self._weights_path = root / WEIGHTS
        from safetensors.numpy import load_file
        from tokenizers import Tokenizer

        tables = load_file(str(self._weights_path))
        table = next(iter(tables.values()))
        if table.ndim != 2 or table.shape[1] != DIM:
            raise EmbeddingUnavailable(f"{self._weights_path}: expected a (vocab, {DIM}) table, "
                                       f"got {table.shape}")
        self._table = np.ascontiguousarray(table, dtype=np.float32)
        self._tok = Tokenizer.from_file(str(root / TOKENIZER))
        self._tok.no_padding()
        self._tok.no_truncation()
        self._ids: dict[str, tuple[int, ...]] = {}

    @cached_property
    def fingerprint(self) -> str:
        """Digest of the table, stored in artifacts so a different table is refused."""
        return hashlib.sha256(self._table.tobytes()).hexdigest()[:16]

    def _fill(self, words: list[str]) -> None:
        cache = self._ids
        missing = [w for w in set(words) if w not in cache]
        if len(cache) + len(missing) > _CACHE_MAX:
            cache.clear()
        for w, enc in zip(missing, self._tok.encode_batch(missing, add_special_tokens=False), strict=True):
            cache[w] = tuple(enc.ids)

    def _word_tokens(self, words: list[str]) -> list[tuple[int, ...]]:
        try:  # fast path: every word seen before
            return list(map(self._ids.__getitem__, words))
        except KeyError:
            self._fill(words)
            return list(map(self._ids.__getitem__, words))

    def token_ids(self, text: str) -> list[int]:
        return list(chain.from_iterable(self._word_tokens(text.split())))

    def encode(self, text: str) -> tuple[list[int], np.ndarray]:
        """Token ids of the text and the number of tokens of each word."""
        toks = self._word_tokens(text.split())
        per_word = np.fromiter(map(len, toks), dtype=np.int32, count=len(toks))
        return list(chain.from_iterable(toks)), per_word

    def mean_of(self, ids: list[int]) -> np.ndarray:
        if not ids:
            return np.zeros(DIM, dtype=np.float32)
        # Counts per distinct token, then one small matrix product: cheaper than
        # gathering a row per token when the prompt repeats tokens (all real text does).
        counts = np.bincount(np.array(ids, dtype=np.int64), minlength=len(self._table))
        seen = np.flatnonzero(counts)
        return (counts[seen].astype(np.float32) @ self._table[seen]) / np.float32(len(ids))

    def mean_embedding(self, text: str) -> np.ndarray:
        return self.mean_of(self.token_ids(text))


_shared: StaticEmbedder | None = None


def shared_embedder() -> StaticEmbedder:
    """One table per process: the router and every scorer instance share it (33 MB as float32)."""
    global _shared
    if _shared is None:
        _shared = StaticEmbedder()
    return _shared
