"""Full-ranking evaluation (RLMRec/SSLRec protocol, as the FACE reference runs it).

For every evaluated user u (one with >= 1 item in the evaluated split) with ground truth
G_u (its items in that split):

- score **all** items, set the score of u's *training* items to −inf (validation and test
  both mask only training items: validation items stay candidates at test time);
- take the top k = min(max K, I) once (``torch.topk``, float32 scores); a position whose
  score is −inf (fewer than k unmasked items) becomes the padding −1;
- compute Recall@K, NDCG@K (and HR@K on request) for K ∈ {5, 10, 20} from those lists with
  :mod:`facelib.eval.metrics`, the code that also scores a generator's lists;
- average over evaluated users.

Ranking runs block by block over the evaluated users, in place in one reused float32
score buffer, with few multi-threaded operations (on a loaded machine each waits for all
its threads): ``scores = E_u[block] @ E_iᵀ`` [rows, I] for an embeddings pair (blocks of
at most ``batch_size`` users and, on the CPU, ``CPU_BLOCK_BYTES``), the training
items set to −inf through precomputed flat indices ``row·I + item`` (a single-threaded
NumPy scatter on the CPU, ``index_fill_`` elsewhere), and ``torch.topk`` written into a
preallocated [M, k] result. The scores, masking and top-k are those of a plain
``scores = E_u @ E_iᵀ; scores[train] = −inf; topk`` over all users at once.
"""

from __future__ import annotations

from collections.abc import Sequence
from itertools import pairwise
from typing import Protocol

import numpy as np
import scipy.sparse as sp
import torch
from torch import Tensor

from facelib.eval.metrics import (
    DEFAULT_METRICS,
    KS,
    PAD,
    PerUserMetrics,
    check_ks,
    check_metrics,
    check_topk,
    hit_matrix,
    metrics_from_hits,
)

# users per call of an arbitrary scorer and upper bound on the rows of a score block
DEFAULT_BATCH_SIZE = 2048
# on the CPU an embeddings pair is scored in blocks of at most this many bytes (float32
# [rows, I], never more than batch_size rows): a few large blocks, reused across blocks
CPU_BLOCK_BYTES = 32 << 20


class Scorer(Protocol):
    def score(self, users: Tensor) -> Tensor:
        """[B] user ids -> [B, I] scores."""
        ...


ScorerLike = Scorer | tuple[Tensor, Tensor]


def block_bounds(n_rows: int, max_rows: int) -> list[tuple[int, int]]:
    """Split ``n_rows`` into the fewest blocks of at most ``max_rows`` rows, of equal size
    up to one row, largest first (no small remainder block): [(start, stop), ...]."""
    if n_rows == 0:
        return []
    n_blocks = -(-n_rows // max_rows)
    size, extra = divmod(n_rows, n_blocks)
    sizes = [size + 1] * extra + [size] * (n_blocks - extra)
    edges = np.cumsum([0] + sizes)
    return [(int(a), int(b)) for a, b in pairwise(edges)]


def mask_scores_(scores: Tensor, flat: np.ndarray | Tensor) -> None:
    """Set ``scores`` [B, I] (contiguous) to −inf **in place** at the flat positions
    ``flat`` (row·I + item, int64 [n]); on the CPU as one single-threaded NumPy scatter."""
    if scores.device.type == "cpu":
        view = scores.numpy().reshape(-1)
        view[np.asarray(flat)] = -np.inf
    else:
        scores.view(-1).index_fill_(0, torch.as_tensor(flat, device=scores.device),
                                    float("-inf"))


def masked_topk_(scores: Tensor, flat: np.ndarray | Tensor, k: int,
                 out: tuple[Tensor, Tensor] | None = None) -> tuple[Tensor, Tensor]:
    """Mask one block in place (:func:`mask_scores_`) and rank it: (values [B, k],
    indices [B, k]) of the k best items, best first (``torch.topk``), written into ``out``
    when given."""
    mask_scores_(scores, flat)
    if out is None:
        return torch.topk(scores, k, dim=1, sorted=True)
    torch.topk(scores, k, dim=1, sorted=True, out=out)
    return out


def _embeddings(scorer: ScorerLike) -> tuple[Tensor, Tensor] | None:
    if isinstance(scorer, tuple):
        return scorer
    if hasattr(scorer, "embeddings_for_eval"):
        return scorer.embeddings_for_eval()
    return None


class Evaluator:
    """Ranks all items for every user with >= 1 item in ``truth``; reusable across epochs.

    Args:
        train: [U, I] training matrix (its items are masked).
        truth: [U, I] matrix of the evaluated split (validation or test).
        ks: cut-offs; the largest is ranked once and the others sliced from it.
        batch_size: users per call of a ``score`` scorer, and the most rows of a score
            block (memory: batch_size × I float32).
        device: where scores are ranked (``None``: the scorer's device / CPU).
        metrics: which of ``"recall"``, ``"ndcg"``, ``"hr"`` to report, in key order.
    """

    def __init__(self, train: sp.spmatrix, truth: sp.spmatrix, ks: Sequence[int] = KS,
                 batch_size: int = DEFAULT_BATCH_SIZE,
                 device: torch.device | str | None = None,
                 metrics: Sequence[str] = DEFAULT_METRICS) -> None:
        train, truth = sp.csr_matrix(train), sp.csr_matrix(truth, copy=True)
        truth.sum_duplicates()  # also sorts the column indices
        if train.shape != truth.shape:
            raise ValueError(f"train {train.shape} and truth {truth.shape} shapes differ")
        self.ks = check_ks(ks)
        self.metrics = check_metrics(metrics)
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.batch_size = int(batch_size)
        self.n_users, self.n_items = train.shape
        self.k_max = min(self.ks[-1], self.n_items)
        self.users = np.flatnonzero(np.diff(truth.indptr) > 0).astype(np.int64)
        self.device = torch.device(device) if device is not None else None
        self._users_t = torch.from_numpy(self.users)
        self._truth = truth[self.users]                                   # [M, I] CSR
        self._n_truth = np.diff(self._truth.indptr).astype(np.int64)         # [M] |G_u|
        mask = train[self.users]                                          # [M, I] CSR
        self._mask_indptr = mask.indptr.astype(np.int64)                  # [M+1]
        rows = np.repeat(np.arange(len(self.users), dtype=np.int64), np.diff(mask.indptr))
        self._mask_flat = rows * self.n_items + mask.indices                 # [nnz] int64

    def _block_rows(self, device: torch.device) -> int:
        if device.type == "cpu":
            return max(1, min(self.batch_size, CPU_BLOCK_BYTES // (4 * max(self.n_items, 1))))
        return self.batch_size

    def topk(self, scorer: ScorerLike) -> Tensor:
        """Ranked top-k lists of the evaluated users: int64 [M, k] on the CPU, row m for
        ``users[m]``, k = min(max(ks), I), training items excluded, ``-1`` where fewer than
        k items have a finite score.

        ``scorer``: a (user_emb [U, d], item_emb [I, d]) pair, an object with
        ``embeddings_for_eval()`` returning such a pair (backbones, most-popular), or any
        object with ``score(users [B]) -> [B, I]`` (its output is copied, never modified).
        """
        n_rows, k = len(self.users), self.k_max
        if n_rows == 0:
            return torch.zeros((0, k), dtype=torch.int64)
        embs = _embeddings(scorer)
        with torch.no_grad():
            if embs is not None:
                dev = self.device or embs[0].device
                user_emb = embs[0].to(dev)[self._users_t.to(dev)]          # [M, d]
                item_t = embs[1].to(dev).T                                 # [d, I] view
                bounds = block_bounds(n_rows, self._block_rows(dev))
                out = _Ranking(self, dev, bounds[0][1] - bounds[0][0])
                for lo, hi in bounds:
                    block = out.buffer[: hi - lo]
                    _matmul_into(user_emb[lo:hi], item_t, block)
                    out.rank(block, lo, hi)
            else:
                out = None
                for lo, hi in block_bounds(n_rows, self.batch_size):
                    users = self._users_t[lo:hi]
                    scores = scorer.score(users if self.device is None
                                          else users.to(self.device))
                    if out is None:
                        out = _Ranking(self, self.device or scores.device, hi - lo)
                    block = out.buffer[: hi - lo]
                    block.copy_(scores)  # to float32 on the ranking device; a copy
                    out.rank(block, lo, hi)
        top = out.top.cpu()
        top.numpy()[out.values.cpu().numpy() == -np.inf] = PAD  # fewer than k candidates
        return top

    def per_user_topk(self, top: Tensor | np.ndarray) -> PerUserMetrics:
        """Per-user metrics of ranked lists from any recommender (e.g. a generator).

        ``top``: int [M, w] item ids for ``users[m]`` (the evaluated users, ascending),
        best first, each item at most once per row, padded with ``-1`` at the end when
        fewer items were produced; w >= min(max(ks), I). Training items are **not** removed
        here (a generator is expected to exclude them). Raises ``ValueError`` on a shape,
        range, padding or duplicate problem.
        """
        t = check_topk(top, self.n_items, self.k_max)
        if t.shape[0] != len(self.users):
            raise ValueError(f"top-K lists must be [M, k] with M = {len(self.users)} "
                             f"evaluated users (Evaluator.users), got {t.shape[0]} rows")
        return self._metrics(t)

    def _metrics(self, top: np.ndarray) -> PerUserMetrics:
        hits = hit_matrix(top, self._truth)
        values = metrics_from_hits(hits, self._n_truth, self.ks, self.metrics)
        return PerUserMetrics(users=self.users.copy(), values=values)

    def per_user(self, scorer: ScorerLike) -> PerUserMetrics:
        """Per-user metrics of ``scorer`` (see :meth:`topk` for the accepted scorers)."""
        return self._metrics(self.topk(scorer).numpy())

    def __call__(self, scorer: ScorerLike) -> dict[str, float]:
        """Mean of each metric over evaluated users (keys ``"recall@20"``, ...)."""
        return self.per_user(scorer).mean()


def _matmul_into(user_emb: Tensor, item_t: Tensor, out: Tensor) -> None:
    """``out`` [B, I] float32 = user_emb [B, d] @ item_t [d, I] (computed in the
    embeddings' dtype, then rounded to float32 when that differs)."""
    if user_emb.dtype == torch.float32 and item_t.dtype == torch.float32:
        torch.mm(user_emb, item_t, out=out)
    else:
        out.copy_(user_emb @ item_t)


class _Ranking:
    """Per-call ranking state: the reused score buffer [rows, I] float32, the mask indices
    (NumPy on the CPU, a tensor on another device) and the [M, k] results (values
    float32, items int64)."""

    def __init__(self, ev: Evaluator, device: torch.device, rows: int) -> None:
        n_rows, k = len(ev.users), ev.k_max
        self.n_items, self.k, self.indptr = ev.n_items, k, ev._mask_indptr
        self.mask_flat: np.ndarray | Tensor = (
            ev._mask_flat if device.type == "cpu" else torch.from_numpy(ev._mask_flat).to(device))
        self.buffer = torch.empty((rows, ev.n_items), dtype=torch.float32, device=device)
        self.values = torch.empty((n_rows, k), dtype=torch.float32, device=device)
        self.top = torch.empty((n_rows, k), dtype=torch.int64, device=device)

    def rank(self, block: Tensor, lo: int, hi: int) -> None:
        """Mask and rank the scores ``block`` [hi-lo, I] of evaluated users lo..hi-1."""
        a, b = self.indptr[lo], self.indptr[hi]
        flat = self.mask_flat[a:b] - lo * self.n_items  # positions within the block
        masked_topk_(block, flat, self.k, out=(self.values[lo:hi], self.top[lo:hi]))


def evaluate(scorer: ScorerLike, train: sp.spmatrix, truth: sp.spmatrix,
             ks: Sequence[int] = KS, batch_size: int = DEFAULT_BATCH_SIZE,
             device: torch.device | str | None = None,
             metrics: Sequence[str] = DEFAULT_METRICS) -> dict[str, float]:
    """One-shot full-ranking evaluation; see :class:`Evaluator` (reuse it across epochs)."""
    return Evaluator(train, truth, ks, batch_size, device, metrics)(scorer)
