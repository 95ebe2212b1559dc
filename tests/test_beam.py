"""Trie-constrained beam search: only legal items, in score order."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from facelib.generative.beam import IndexTrie, beam_search

INDICES = np.array([[0, 1, 2], [0, 2, 0], [1, 0, 1], [2, 2, 2], [0, 1, 0]])


def _table_scores(table: np.ndarray):
    """Log-probabilities that depend on depth and the last code only (so every item's
    exact sequence score is known): table [L, V + 1, V], row V for the empty prefix."""
    def scores(prefixes: np.ndarray) -> np.ndarray:
        t = prefixes.shape[1]
        last = prefixes[:, -1] if t else np.full(len(prefixes), table.shape[1] - 1)
        return table[t, last]
    return scores


def _exact(table: np.ndarray) -> list[tuple[int, float]]:
    out = []
    for item, row in enumerate(INDICES):
        prev, total = table.shape[1] - 1, 0.0
        for t, c in enumerate(row):
            total += table[t, prev, c]
            prev = c
        out.append((item, total))
    return sorted(out, key=lambda x: -x[1])


def test_trie_allows_only_extensions_of_legal_indices():
    trie = IndexTrie(INDICES)
    assert sorted(trie.allowed([])) == [0, 1, 2]
    assert sorted(trie.allowed([0])) == [1, 2]
    assert sorted(trie.allowed([0, 1])) == [0, 2]
    assert trie.allowed([1, 1]) == []
    assert trie.item([0, 2, 0]) == 1
    with pytest.raises(ValueError, match="1 items share an index"):
        IndexTrie(np.array([[0, 1], [0, 1]]))


@pytest.mark.parametrize("seed", range(5))
def test_wide_beam_returns_every_legal_item_in_exact_score_order(seed):
    rng = np.random.default_rng(seed)
    table = np.log(rng.dirichlet(np.ones(3), size=(3, 4)))  # [L, V + 1, V]
    got = beam_search(_table_scores(table), IndexTrie(INDICES), beam=len(INDICES))
    want = _exact(table)
    assert [i for i, _ in got] == [i for i, _ in want]
    np.testing.assert_allclose([s for _, s in got], [s for _, s in want])


def test_narrow_beam_returns_legal_items_best_first():
    rng = np.random.default_rng(0)
    table = np.log(rng.dirichlet(np.ones(3), size=(3, 4)))
    # a model that puts most mass on an illegal continuation ([1, 1, *]) is never followed
    table[1, 1] = np.log([0.01, 0.98, 0.01])
    got = beam_search(_table_scores(table), IndexTrie(INDICES), beam=2)
    assert len(got) == 2 and all(0 <= i < len(INDICES) for i, _ in got)
    assert got[0][1] >= got[1][1]
    legal = {tuple(r) for r in INDICES.tolist()}
    assert all(tuple(INDICES[i]) in legal for i, _ in got)
    # beam 1 is greedy over legal codes
    greedy = beam_search(_table_scores(table), IndexTrie(INDICES), beam=1)
    prefix: list[int] = []
    prev = 3
    for t in range(3):
        allowed = IndexTrie(INDICES).allowed(prefix)
        c = max(allowed, key=lambda c: table[t, prev, c])
        prefix.append(c)
        prev = c
    assert greedy[0][0] == IndexTrie(INDICES).item(prefix)
    with pytest.raises(ValueError, match="beam = 0"):
        beam_search(_table_scores(table), IndexTrie(INDICES), beam=0)


def test_all_codes_legal_reduces_to_plain_beam_search():
    full = np.array(list(itertools.product(range(2), repeat=2)))
    table = np.log(np.full((2, 3, 2), 0.5))
    table[0, 2] = np.log([0.3, 0.7])
    got = beam_search(_table_scores(table), IndexTrie(full), beam=4)
    assert [i for i, _ in got][:2] == [2, 3]  # [1, 0], [1, 1]: first code 1 is likelier
