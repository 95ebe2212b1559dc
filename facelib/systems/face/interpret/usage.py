"""Study 4, codebook usage and stability of the descriptors.

Usage of a descriptor set over N entities (N x C word slots), with ``p_w`` the share of
slots holding word w:

- ``distinct``: words used at least once; ``coverage``: distinct / V;
- ``entropy`` H = -sum_w p_w log2 p_w (bits) and ``perplexity`` 2^H, the number of
  equally used words with the same entropy (at most min(V, N*C));
- ``concept_distinct``: distinct words per concept slot c (column c of the set), averaged
  over the C slots: a slot that always holds the same word has 1 (for FACE a slot is a
  concept vector; for the references it is the draw order or the similarity rank);
- ``top10_share``: share of slots held by the 10 most used words.

Stability: for two runs (seeds) of the same backbone, the Jaccard index of an entity's two
word sets, averaged over entities; reported per seed pair and averaged over the pairs.
Random words give about C / (2V - C); a deterministic variant gives 1.
"""

from __future__ import annotations

from itertools import combinations

import numpy as np


def usage_counts(idx: np.ndarray, vocab_size: int) -> np.ndarray:
    """How often each vocabulary word fills a slot of ``idx`` [N, C] -> [V] int64."""
    return np.bincount(np.asarray(idx).ravel(), minlength=vocab_size).astype(np.int64)


def entropy_bits(counts: np.ndarray) -> float:
    """Shannon entropy (bits) of the distribution proportional to ``counts``."""
    counts = np.asarray(counts, dtype=np.float64)
    p = counts[counts > 0] / counts.sum()
    return float(-(p * np.log2(p)).sum()) if len(p) else 0.0


def usage_stats(idx: np.ndarray, vocab_size: int) -> dict[str, float]:
    """distinct, coverage, entropy, perplexity, concept_distinct (mean, min, max) and
    top10_share of a descriptor set ``idx`` [N, C] (module docstring)."""
    idx = np.asarray(idx)
    counts = usage_counts(idx, vocab_size)
    h = entropy_bits(counts)
    per_slot = np.array([len(np.unique(idx[:, c])) for c in range(idx.shape[1])])
    top = np.sort(counts)[::-1][:10].sum()
    return {"distinct": int((counts > 0).sum()),
            "coverage": float((counts > 0).sum() / vocab_size),
            "entropy": h, "perplexity": float(2.0 ** h),
            "concept_distinct": float(per_slot.mean()),
            "concept_distinct_min": int(per_slot.min()),
            "concept_distinct_max": int(per_slot.max()),
            "top10_share": float(top / counts.sum())}


def top_words(idx: np.ndarray, words: np.ndarray, n: int = 10) -> dict[str, int]:
    """The ``n`` most used words of ``idx`` with their slot counts, most used first."""
    counts = usage_counts(idx, len(words))
    order = np.argsort(-counts, kind="stable")[:n]
    return {str(words[i]): int(counts[i]) for i in order if counts[i] > 0}


def jaccard_rows(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Row-wise Jaccard index of the word sets of ``a`` and ``b`` [N, C] -> [N]."""
    a, b = np.sort(np.asarray(a), axis=1), np.sort(np.asarray(b), axis=1)
    first_a = np.concatenate([np.ones((len(a), 1), bool), np.diff(a, axis=1) != 0], axis=1)
    first_b = np.concatenate([np.ones((len(b), 1), bool), np.diff(b, axis=1) != 0], axis=1)
    inter = ((a[:, :, None] == b[:, None, :]).any(axis=2) & first_a).sum(axis=1)
    union = first_a.sum(axis=1) + first_b.sum(axis=1) - inter
    return inter / np.maximum(union, 1)


def pairwise_jaccard(runs: dict[str, np.ndarray]) -> dict[str, float]:
    """Mean row-wise Jaccard for every pair of runs ``{seed: [N, C]}``, keyed "s1~s2"."""
    return {f"{s}~{t}": float(jaccard_rows(runs[s], runs[t]).mean())
            for s, t in combinations(sorted(runs, key=str), 2)}


def random_jaccard(c: int, vocab_size: int) -> float:
    """Expected Jaccard index of two independent uniform C-subsets of V words (approx.,
    from the expected overlap C^2 / V)."""
    inter = c * c / vocab_size
    return float(inter / (2 * c - inter))
