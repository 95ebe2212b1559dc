"""Constrained beam search over a trie of item indices (LC-Rec's generation step).

Each item is a sequence of L discrete codes (its index, e.g. ``<a_3><b_17><c_2>``); a
language model scores the next code given the prompt and the codes so far. LC-Rec keeps
generation legal with a prefix trie: at depth t, only codes that extend some item's index
are allowed. :func:`beam_search` keeps the ``beam`` best legal prefixes by summed
log-probability at every depth and returns the complete items, best first; with a beam at
least as wide as the trie, that is the exact top of the items by sequence log-probability.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np


class IndexTrie:
    """Prefix trie of the legal index sequences (all of one length L).

    Args:
        indices: [I, L] int codes, row i the index of item i; rows must be distinct
            (collision-free indices).
    """

    def __init__(self, indices: np.ndarray) -> None:
        indices = np.asarray(indices, dtype=np.int64)
        if indices.ndim != 2 or not len(indices):
            raise ValueError(f"indices must be a non-empty [I, L] array, got {indices.shape}")
        self.depth = indices.shape[1]
        self._next: dict[tuple[int, ...], dict[int, None]] = {}  # prefix -> codes, in order
        self._item: dict[tuple[int, ...], int] = {}
        for item, row in enumerate(indices.tolist()):
            for t in range(self.depth):
                self._next.setdefault(tuple(row[:t]), {})[row[t]] = None
            self._item[tuple(row)] = item
        if len(self._item) != len(indices):
            raise ValueError(f"{len(indices) - len(self._item)} items share an index with "
                             f"another item; resolve collisions before building the trie")

    def allowed(self, prefix: Sequence[int]) -> list[int]:
        """The codes that extend ``prefix`` towards some item ([] if none)."""
        return list(self._next.get(tuple(prefix), ()))

    def item(self, codes: Sequence[int]) -> int:
        """The item whose index is ``codes``; KeyError if none."""
        return self._item[tuple(codes)]


# log-probabilities of the next code: prefixes [B, t] -> [B, V]
NextCodeScores = Callable[[np.ndarray], np.ndarray]


def beam_search(scores: NextCodeScores, trie: IndexTrie, beam: int
                ) -> list[tuple[int, float]]:
    """The ``beam`` best legal items as ``(item, sequence log-probability)``, best first.

    At each depth every kept prefix is extended by its allowed codes only; the ``beam``
    best extensions by summed log-probability are kept (ties: lower code sequence first).
    """
    if beam < 1:
        raise ValueError(f"beam = {beam}: must be >= 1")
    prefixes: list[tuple[int, ...]] = [()]
    totals = np.zeros(1)
    for _ in range(trie.depth):
        logp = np.asarray(scores(np.array(prefixes, dtype=np.int64).reshape(len(prefixes), -1)))
        cands = [(totals[b] + float(logp[b, c]), prefix + (c,))
                 for b, prefix in enumerate(prefixes) for c in trie.allowed(prefix)]
        cands.sort(key=lambda x: (-x[0], x[1]))
        kept = cands[:beam]
        prefixes = [p for _, p in kept]
        totals = np.array([s for s, _ in kept])
    return [(trie.item(p), float(s)) for p, s in zip(prefixes, totals)]
