"""Full-ranking evaluation (RLMRec/SSLRec protocol, as the FACE reference runs it).

For every evaluated user u (one with >= 1 item in the evaluated split) with ground truth
G_u (its items in that split):

- score **all** items, set the score of u's *training* items to −inf (validation and test
  both mask only training items: validation items stay candidates at test time);
- take the top 20 once (``torch.topk``) and slice K ∈ {5, 10, 20} from it;
- ``Recall@K = |top_K ∩ G_u| / |G_u|``               (denominator **not** min(K, |G_u|))
- ``NDCG@K  = Σ_{r≤K} 1[hit_r] / log2(r + 1)  /  Σ_{r≤min(K,|G_u|)} 1 / log2(r + 1)``
- average over evaluated users.

Users are processed in batches; the masks and ground truths are scattered into the batch's
score matrix from CSR index arrays precomputed once (no Python loop over users).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np
import scipy.sparse as sp
import torch
from torch import Tensor

KS: tuple[int, ...] = (5, 10, 20)


class Scorer(Protocol):
    def score(self, users: Tensor) -> Tensor:
        """[B] user ids -> [B, I] scores."""
        ...


@dataclass
class PerUserMetrics:
    """Per-user metrics, aligned with ``users`` (for paired significance tests).

    Attributes:
        users [M]: evaluated user ids (ascending).
        values: ``"recall@K"`` / ``"ndcg@K"`` -> float64 [M].
    """

    users: np.ndarray
    values: dict[str, np.ndarray]

    def mean(self) -> dict[str, float]:
        """Averages over evaluated users: ``{"recall@20": ..., "ndcg@20": ..., ...}``."""
        return {k: float(v.mean()) if len(v) else 0.0 for k, v in self.values.items()}


@dataclass
class _Batch:
    users: Tensor        # [B] user ids
    mask_flat: Tensor    # flat indices row·I + item of training items to mask
    truth_flat: Tensor   # flat indices of ground-truth items
    n_truth: Tensor      # [B] |G_u| int64
    n_truth_f: Tensor    # [B] |G_u| float64


class Evaluator:
    """Ranks all items for every user with >= 1 item in ``truth``; reusable across epochs.

    Args:
        train: [U, I] training matrix (its items are masked).
        truth: [U, I] matrix of the evaluated split (validation or test).
        ks: cut-offs; the largest is computed once and the others sliced from it.
        batch_size: users per batch.
        device: where scores are ranked (``None``: the scorer's device / CPU).
    """

    def __init__(self, train: sp.spmatrix, truth: sp.spmatrix, ks: Sequence[int] = KS,
                 batch_size: int = 2048, device: torch.device | str | None = None) -> None:
        train, truth = sp.csr_matrix(train), sp.csr_matrix(truth)
        truth.sum_duplicates()  # also sorts the column indices (needed by the hit lookup)
        truth.sort_indices()
        if train.shape != truth.shape:
            raise ValueError(f"train {train.shape} and truth {truth.shape} shapes differ")
        if not ks or min(ks) < 1:
            raise ValueError(f"ks must be positive cut-offs, got {ks}")
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.n_users, self.n_items = train.shape
        self.ks = tuple(sorted(set(int(k) for k in ks)))
        self.k_max = min(self.ks[-1], self.n_items)
        self.users = np.flatnonzero(np.diff(truth.indptr) > 0).astype(np.int64)
        self.device = torch.device(device) if device is not None else None
        self._batches: list[_Batch] = []
        for start in range(0, len(self.users), batch_size):
            users = self.users[start:start + batch_size]
            self._batches.append(_Batch(
                users=torch.from_numpy(users),
                mask_flat=torch.from_numpy(_flat_indices(train[users], self.n_items)),
                truth_flat=torch.from_numpy(_flat_indices(truth[users], self.n_items)),
                n_truth=torch.from_numpy(np.diff(truth[users].indptr).astype(np.int64)),
                n_truth_f=torch.from_numpy(np.diff(truth[users].indptr).astype(np.float64)),
            ))
        # discount 1/log2(r+1) for ranks r = 1..k_max, and IDCG by |G| (capped at k_max)
        self._disc = 1.0 / torch.log2(torch.arange(2, self.k_max + 2, dtype=torch.float64))
        self._idcg_cum = torch.cat([torch.zeros(1, dtype=torch.float64), self._disc.cumsum(0)])

    def per_user(self, scorer: Scorer | tuple[Tensor, Tensor]) -> PerUserMetrics:
        """Per-user Recall@K and NDCG@K of ``scorer``: a (user_emb [U, d], item_emb [I, d])
        pair, an object with ``embeddings_for_eval()`` returning such a pair (backbones,
        most-popular), or any object with ``score(users [B]) -> [B, I]``."""
        if isinstance(scorer, tuple):
            embs: tuple[Tensor, Tensor] | None = scorer
        elif hasattr(scorer, "embeddings_for_eval"):
            embs = scorer.embeddings_for_eval()
        else:
            embs = None
        if embs is not None:
            dev = self.device or embs[0].device
            user_emb = embs[0].to(dev)
            item_t = embs[1].to(dev).T.contiguous()                      # [d, I]
        out: dict[str, list[Tensor]] = {f"{m}@{k}": [] for m in ("recall", "ndcg")
                                        for k in self.ks}
        with torch.no_grad():
            for b in self._batches:
                if embs is not None:
                    scores = user_emb[b.users.to(dev)] @ item_t              # [B, I] fresh
                else:  # an arbitrary scorer may hand out a view of cached data: copy
                    users = b.users if self.device is None else b.users.to(self.device)
                    scores = scorer.score(users)
                    scores = scores.to(self.device or scores.device).clone()
                scores = scores.float() if scores.dtype != torch.float32 else scores
                flat = scores.view(-1)
                flat.index_fill_(0, b.mask_flat.to(flat.device), float("-inf"))  # mask train
                top = torch.topk(scores, self.k_max, dim=1, sorted=True).indices  # [B, k]
                hits = _hits(top.cpu(), b.truth_flat, self.n_items)               # [B, k]
                dcg = (hits * self._disc).cumsum(1)                               # [B, k]
                cum_hits = hits.cumsum(1)
                for k in self.ks:
                    kk = min(k, self.k_max)
                    out[f"recall@{k}"].append(cum_hits[:, kk - 1] / b.n_truth_f)
                    idcg = self._idcg_cum[torch.clamp(b.n_truth, max=kk)]
                    out[f"ndcg@{k}"].append(dcg[:, kk - 1] / idcg)
        values = {k: (torch.cat(v).numpy() if v else np.zeros(0)) for k, v in out.items()}
        return PerUserMetrics(users=self.users.copy(), values=values)

    def __call__(self, scorer: Scorer | tuple[Tensor, Tensor]) -> dict[str, float]:
        """Mean Recall@K / NDCG@K over evaluated users."""
        return self.per_user(scorer).mean()


def _hits(top: Tensor, truth_flat: Tensor, n_items: int) -> Tensor:
    """1[top[b, r] ∈ G_b] as float64 [B, k]: look up row·I + item in the sorted flat
    ground-truth positions (CSR order is row-major with sorted columns)."""
    rows = torch.arange(top.shape[0], dtype=torch.int64)[:, None]
    q = rows * n_items + top                                                # [B, k]
    if truth_flat.numel() == 0:
        return torch.zeros(q.shape, dtype=torch.float64)
    at = torch.searchsorted(truth_flat, q).clamp_(max=truth_flat.numel() - 1)
    return (truth_flat[at] == q).to(torch.float64)


def _flat_indices(m: sp.csr_matrix, n_items: int) -> np.ndarray:
    """Flat positions row·I + col of the nonzeros of a CSR batch (rows = batch rows)."""
    rows = np.repeat(np.arange(m.shape[0], dtype=np.int64), np.diff(m.indptr))
    return rows * n_items + m.indices.astype(np.int64)


def evaluate(scorer: Scorer | tuple[Tensor, Tensor], train: sp.spmatrix, truth: sp.spmatrix,
             ks: Sequence[int] = KS, batch_size: int = 2048,
             device: torch.device | str | None = None) -> dict[str, float]:
    """One-shot full-ranking evaluation; see :class:`Evaluator` (reuse it across epochs)."""
    return Evaluator(train, truth, ks, batch_size, device)(scorer)
