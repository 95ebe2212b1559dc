"""Study 1, profile retrieval: do an entity's descriptors point back to its own profile?

Each sampled entity's descriptor sentence (the FACE prompt with its C words, encoded by the
frozen encoder through the real tokenizer) is a query against the profile embeddings of
*every* entity of the same type; the entity's own profile is the one relevant answer.
With scores ``s_j = cos(q, p_j)`` and ``o`` the own profile::

    rank  = #{j : s_j >= s_o}          (ties count against the query: pessimistic)
    hit@k = mean(rank <= k)            MRR = mean(1 / rank)

Also reported: the median rank, and the mean cosine to the own profile against the mean
cosine to the others (the reference code's "diagonal vs off-diagonal" similarity). Chance
levels: hit@k = k / N, MRR ~ ln(N) / N.
"""

from __future__ import annotations

import numpy as np

KS = (1, 10)


def own_ranks(queries: np.ndarray, targets: np.ndarray, own: np.ndarray,
              chunk: int = 1024) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Rank of each query's own target among all targets.

    ``queries`` [Q, d], ``targets`` [N, d] (unit norm: dot = cosine), ``own`` [Q] target
    index of each query -> (rank [Q] int64, 1 = best; own cosine [Q]; mean cosine to the
    other N-1 targets [Q]).
    """
    queries = np.asarray(queries, dtype=np.float32)
    targets = np.asarray(targets, dtype=np.float32)
    own = np.asarray(own, dtype=np.int64)
    if len(queries) != len(own):
        raise ValueError(f"{len(queries)} queries but {len(own)} own-target ids")
    ranks = np.empty(len(own), dtype=np.int64)
    cos_own = np.empty(len(own), dtype=np.float64)
    cos_other = np.empty(len(own), dtype=np.float64)
    n = len(targets)
    for s in range(0, len(own), chunk):
        scores = queries[s:s + chunk] @ targets.T  # [b, N]
        mine = scores[np.arange(len(scores)), own[s:s + chunk]]  # [b]
        ranks[s:s + chunk] = (scores >= mine[:, None]).sum(axis=1)
        cos_own[s:s + chunk] = mine
        others = scores.sum(axis=1, dtype=np.float64) - mine
        cos_other[s:s + chunk] = others / max(n - 1, 1)
    return ranks, cos_own, cos_other


def rank_metrics(ranks: np.ndarray, ks: tuple[int, ...] = KS) -> dict[str, float]:
    """hit@k for each k, MRR and the median rank of 1-based ``ranks``."""
    ranks = np.asarray(ranks, dtype=np.float64)
    out = {f"hit@{k}": float(np.mean(ranks <= k)) for k in ks}
    out["mrr"] = float(np.mean(1.0 / ranks))
    out["median_rank"] = float(np.median(ranks))
    return out


def retrieval_metrics(queries: np.ndarray, targets: np.ndarray, own: np.ndarray,
                      ks: tuple[int, ...] = KS) -> dict[str, float]:
    """hit@k, MRR, median rank, mean own and other cosine of descriptor-sentence queries
    against profile targets (module docstring)."""
    ranks, cos_own, cos_other = own_ranks(queries, targets, own)
    return {**rank_metrics(ranks, ks), "cos_own": float(cos_own.mean()),
            "cos_other": float(cos_other.mean())}


def chance_metrics(n_targets: int, ks: tuple[int, ...] = KS) -> dict[str, float]:
    """Expected hit@k and MRR of a uniformly random ranking of ``n_targets`` profiles."""
    return {**{f"hit@{k}": min(k, n_targets) / n_targets for k in ks},
            "mrr": float(np.sum(1.0 / np.arange(1, n_targets + 1)) / n_targets)}
