"""Semantic Convergence's serving: every user's top-K items generated offline and cached.

Generation costs a beam search per request; the paper (reconstructed, §4 of
``related-systems.md``) pre-computes each user's top-K item codes offline so that serving is
a lookup. :class:`TopKCache` holds the lists [U, K]; :meth:`TopKCache.serve` is an O(1)
row read; :func:`serving_benchmark` times both ways on the same users in the same run and
reports their ratio.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from facelib.generative.backend import GenerativeBackend
from facelib.generative.beam import IndexTrie
from facelib.generative.recommend import PromptFn, generate_top


@dataclass(frozen=True)
class TopKCache:
    """Each user's generated top-K items.

    Attributes:
        items: [U, K] int64 item ids per user, best first, padded with -1.
    """

    items: np.ndarray

    def serve(self, user: int) -> np.ndarray:
        """User ``user``'s cached items [<= K] (no padding); IndexError for an unknown user."""
        if not 0 <= user < len(self.items):
            raise IndexError(f"user {user} is not in the cache (0..{len(self.items) - 1})")
        row = self.items[user]
        return row[row >= 0]

    def save(self, path: Path) -> Path:
        with open(path, "wb") as fh:
            np.savez(fh, items=self.items)
        return Path(path)

    @classmethod
    def load(cls, path: Path) -> TopKCache:
        with np.load(path) as z:
            return cls(np.asarray(z["items"], dtype=np.int64))


def build_cache(backend: GenerativeBackend, histories: Sequence[np.ndarray], codes: np.ndarray,
                prompt: PromptFn, trie: IndexTrie, beam: int, k: int) -> TopKCache:
    """Generate every user's top ``k`` (``k <= beam``) offline."""
    if not 1 <= k <= beam:
        raise ValueError(f"cache k = {k} must be in 1..beam ({beam}); lower k or raise beam")
    return TopKCache(generate_top(backend, histories, codes, prompt, trie, beam, width=k))


def serving_benchmark(cache: TopKCache, backend: GenerativeBackend,
                      histories: Sequence[np.ndarray], codes: np.ndarray, prompt: PromptFn,
                      trie: IndexTrie, beam: int, users: np.ndarray, repeats: int = 1000
                      ) -> dict[str, float]:
    """Seconds per request of generating a user's list (one request at a time) against
    looking it up in ``cache`` (mean over ``repeats`` passes), on the same ``users``."""
    start = time.perf_counter()
    for u in users:
        generate_top(backend, [histories[u]], codes, prompt, trie, beam, width=cache.items.shape[1])
    generate = (time.perf_counter() - start) / len(users)
    start = time.perf_counter()
    for _ in range(repeats):
        for u in users:
            cache.serve(int(u))
    lookup = (time.perf_counter() - start) / (repeats * len(users))
    return {"users": len(users), "generate_ms": round(generate * 1e3, 3),
            "lookup_us": round(lookup * 1e6, 3), "speedup": round(generate / lookup, 1)}
