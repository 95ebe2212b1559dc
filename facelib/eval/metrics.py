"""Top-K metrics from ranked item lists: one implementation for every recommender.

A recommender hands over, for each evaluated user m (row m), a ranked list ``top[m]`` of
item ids (an int array [M, k], best first); a list with fewer than k items is padded at
the end with ``PAD = -1``. With G_m the user's ground-truth items and
``h_r = 1[top[m, r] ∈ G_m]`` for ranks r = 1..k (0 for padding):

- ``Recall@K = Σ_{r≤K} h_r / |G_m|``                      (denominator **not** min(K, |G_m|))
- ``NDCG@K  = Σ_{r≤K} h_r / log2(r + 1)  /  Σ_{r≤min(K,|G_m|)} 1 / log2(r + 1)``
- ``HR@K    = 1[Σ_{r≤K} h_r > 0]``                         (hit ratio; = Recall@K when |G_m| = 1)

A full-ranking model gets its lists from :class:`facelib.eval.Evaluator` (scores -> masked
top-K, :mod:`facelib.eval.ranking`); a generator that emits item ids passes its lists to
:meth:`facelib.eval.Evaluator.per_user_topk` or :func:`topk_metrics`. Both end here.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp
from torch import Tensor

KS: tuple[int, ...] = (5, 10, 20)
METRICS: tuple[str, ...] = ("recall", "ndcg", "hr")
DEFAULT_METRICS: tuple[str, ...] = ("recall", "ndcg")
PAD = -1
# rows of the dense boolean ground-truth block used to look hits up (bounds its memory to
# HIT_BLOCK_CELLS bytes)
HIT_BLOCK_CELLS = 1 << 20


@dataclass
class PerUserMetrics:
    """Per-user metrics, aligned with ``users`` (for paired significance tests).

    Attributes:
        users [M]: evaluated user ids (ascending).
        values: ``"recall@K"`` / ``"ndcg@K"`` / ``"hr@K"`` -> float64 [M].
    """

    users: np.ndarray
    values: dict[str, np.ndarray]

    def mean(self) -> dict[str, float]:
        """Averages over evaluated users: ``{"recall@20": ..., "ndcg@20": ..., ...}``."""
        return {k: float(v.mean()) if len(v) else 0.0 for k, v in self.values.items()}


def check_ks(ks: Sequence[int]) -> tuple[int, ...]:
    """Sorted distinct cut-offs; ``ValueError`` unless all are >= 1."""
    if not ks or min(ks) < 1:
        raise ValueError(f"ks must be positive cut-offs, got {tuple(ks)}")
    return tuple(sorted({int(k) for k in ks}))


def check_metrics(metrics: Sequence[str]) -> tuple[str, ...]:
    """Metric names in the given order; ``ValueError`` for an unknown or repeated one."""
    names = tuple(metrics)
    bad = [m for m in names if m not in METRICS]
    if not names or bad or len(set(names)) != len(names):
        raise ValueError(f"metrics must be distinct names from {METRICS}, got {names}")
    return names


def check_topk(top: Tensor | np.ndarray, n_items: int, width: int) -> np.ndarray:
    """Validate ranked lists and return them as an int64 array [M, width].

    ``top`` [M, w >= width]: item ids in [0, n_items) best first, each at most once per
    row, then ``PAD`` (-1) only at the end of a row; columns beyond ``width`` are dropped.
    """
    t = top.detach().cpu().numpy() if isinstance(top, Tensor) else np.asarray(top)
    if t.ndim != 2 or t.dtype.kind not in "iu":
        raise ValueError(f"top-K lists must be an integer array [M, k], got {t.dtype} "
                         f"{t.shape}")
    if t.shape[1] < width:
        raise ValueError(f"top-K lists have {t.shape[1]} columns but the largest cut-off "
                         f"needs {width}; pad each row with {PAD}")
    t = t[:, :width].astype(np.int64)
    if t.size == 0:
        return t
    lo, hi = int(t.min()), int(t.max())
    if lo < PAD or hi >= n_items:
        raise ValueError(f"top-K item ids must lie in [0, {n_items}) or be the padding {PAD}, "
                         f"got values in [{lo}, {hi}]")
    valid = t >= 0
    gap = valid[:, 1:] & ~valid[:, :-1]
    if gap.any():
        row = int(np.flatnonzero(gap.any(1))[0])
        raise ValueError(f"top-K row {row} has an item after padding; put the padding "
                         f"{PAD} at the end of each row")
    s = np.sort(t, axis=1)
    dup = (s[:, 1:] == s[:, :-1]) & (s[:, 1:] >= 0)
    if dup.any():
        row = int(np.flatnonzero(dup.any(1))[0])
        item = int(s[row, 1:][dup[row]][0])
        raise ValueError(f"top-K row {row} lists item {item} more than once; each item may "
                         f"appear at most once per user")
    return t


def hit_matrix(top: np.ndarray, truth: sp.csr_matrix) -> np.ndarray:
    """``h[m, r] = 1[top[m, r] ∈ G_m]`` as bool [M, k] for validated lists ``top`` [M, k]
    (int64, ``PAD`` allowed) and ``truth`` [M, I] CSR (row m = G_m).

    Rows are processed in blocks of at most ``HIT_BLOCK_CELLS`` cells: the block's ground
    truth is scattered into a dense boolean [rows, I] matrix and the lists are gathered
    from it (NumPy, single-threaded: these are small arrays).
    """
    m_rows, k = top.shape
    n_items = truth.shape[1]
    hits = np.zeros((m_rows, k), dtype=bool)
    if m_rows == 0 or k == 0:
        return hits
    rows_per_block = max(1, HIT_BLOCK_CELLS // max(n_items, 1))
    block = np.zeros((min(rows_per_block, m_rows), n_items), dtype=bool)
    indptr, cols = truth.indptr, truth.indices
    row_of = np.repeat(np.arange(m_rows, dtype=np.int64), np.diff(indptr))
    valid = top >= 0
    safe = np.maximum(top, 0)
    for start in range(0, m_rows, rows_per_block):
        stop = min(start + rows_per_block, m_rows)
        lo, hi = int(indptr[start]), int(indptr[stop])
        r, c = row_of[lo:hi] - start, cols[lo:hi]
        blk = block[: stop - start]
        blk[r, c] = True
        hits[start:stop] = np.take_along_axis(blk, safe[start:stop], axis=1) & valid[start:stop]
        blk[r, c] = False  # leave the block empty for the next rows
    return hits


def metrics_from_hits(hits: np.ndarray, n_truth: np.ndarray, ks: Sequence[int],
                      metrics: Sequence[str] = DEFAULT_METRICS) -> dict[str, np.ndarray]:
    """Per-user metrics from ``hits`` (bool [M, k], rank r = column r-1) and
    ``n_truth`` = |G_m| (int [M], all >= 1), for cut-offs ``ks`` (K > k uses all k
    columns). Returns ``"{metric}@{K}"`` -> float64 [M], metrics outer, K inner."""
    m_rows, k = hits.shape
    h = hits.astype(np.float64)
    disc = 1.0 / np.log2(np.arange(2, k + 2, dtype=np.float64))               # [k]
    idcg_cum = np.concatenate([[0.0], np.cumsum(disc)])                        # [k+1]
    cum_hits = np.cumsum(h, axis=1)                                            # [M, k]
    dcg = np.cumsum(h * disc, axis=1)                                          # [M, k]
    n_truth = np.asarray(n_truth, dtype=np.int64)
    out: dict[str, np.ndarray] = {}
    for name in metrics:
        for cut in ks:
            kk = min(cut, k)
            if kk == 0 or m_rows == 0:
                out[f"{name}@{cut}"] = np.zeros(m_rows)
            elif name == "recall":
                out[f"{name}@{cut}"] = cum_hits[:, kk - 1] / n_truth
            elif name == "ndcg":
                out[f"{name}@{cut}"] = dcg[:, kk - 1] / idcg_cum[np.minimum(n_truth, kk)]
            else:  # "hr"
                out[f"{name}@{cut}"] = (cum_hits[:, kk - 1] > 0).astype(np.float64)
    return out


def topk_metrics(top: Tensor | np.ndarray, truth: sp.spmatrix, ks: Sequence[int] = KS,
                 metrics: Sequence[str] = DEFAULT_METRICS) -> dict[str, np.ndarray]:
    """Per-user Recall@K / NDCG@K / HR@K of ranked lists (module docstring's equations).

    Args:
        top: int [M, w] item ids per user, best first, padded with -1 at the end; w must be
            >= min(max(ks), I). Duplicates within a row raise ``ValueError``.
        truth: [M, I] ground truth, row m aligned with ``top[m]``; every row needs >= 1 item.
        ks: cut-offs.
        metrics: names from ``METRICS``, in output order.

    Returns:
        ``"{metric}@{K}"`` -> float64 [M].
    """
    ks, metrics = check_ks(ks), check_metrics(metrics)
    truth = sp.csr_matrix(truth, copy=True)
    truth.sum_duplicates()
    n_rows, n_items = truth.shape
    t = check_topk(top, n_items, min(ks[-1], n_items))
    if t.shape[0] != n_rows:
        raise ValueError(f"top-K lists have {t.shape[0]} rows but truth has {n_rows}; pass "
                         f"one ground-truth row per list")
    n_truth = np.diff(truth.indptr)
    if n_rows and n_truth.min() == 0:
        raise ValueError(f"ground-truth row {int(np.argmin(n_truth))} is empty; evaluate only "
                         f"users with >= 1 ground-truth item")
    return metrics_from_hits(hit_matrix(t, truth), n_truth, ks, metrics)
