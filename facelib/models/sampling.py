"""BPR training triples: one fresh uniform negative per training interaction per epoch.

For every training pair (u, i⁺) an item i⁻ is drawn uniformly from all items and redrawn
while (u, i⁻) is a training interaction (rejection sampling, as the reference). The
rejection runs on whole arrays: draw for all pairs, find the collisions with one
``searchsorted`` against the sorted training keys ``u·I + i``, redraw only those; a few
rounds empty the collision set (expected fraction per round = the user's density).
Everything is driven by one ``np.random.Generator`` so a seeded run (and a resumed one)
sees the same negatives and the same batch order.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import scipy.sparse as sp
import torch
from torch import Tensor

MAX_ROUNDS = 1000


class SamplingError(ValueError):
    """No negative can be drawn (a user interacted with every item)."""


class BPRSampler:
    """Shuffled mini-batches of (users, pos, neg) over the training pairs.

    Args:
        train: int64 [N, 2] (user, item) training pairs.
        n_items: I (negatives are drawn from 0..I-1).
    """

    def __init__(self, train: np.ndarray, n_items: int) -> None:
        train = np.asarray(train, dtype=np.int64)
        if train.ndim != 2 or train.shape[1] != 2 or len(train) == 0:
            raise ValueError(f"training pairs must be a non-empty [N, 2] array, got "
                             f"shape {train.shape}")
        self.pairs = train
        self.n_items = int(n_items)
        self.keys = np.unique(train[:, 0] * self.n_items + train[:, 1])  # sorted u·I + i
        per_user = np.bincount(self.keys // self.n_items)
        full = np.flatnonzero(per_user >= self.n_items)
        if len(full):
            raise SamplingError(f"user {int(full[0])} interacted with all {self.n_items} "
                                f"items in training, so no negative exists; drop such users")

    def __len__(self) -> int:
        return len(self.pairs)

    def is_positive(self, users: np.ndarray, items: np.ndarray) -> np.ndarray:
        """Whether each (user, item) is a training interaction: bool [M]."""
        q = users.astype(np.int64) * self.n_items + items
        at = np.searchsorted(self.keys, q)
        at[at == len(self.keys)] = 0
        return self.keys[at] == q

    def negatives(self, users: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """One uniform negative per entry of ``users`` [M] -> int64 [M], never a training
        item of that user."""
        neg = rng.integers(0, self.n_items, size=len(users), dtype=np.int64)
        bad = np.flatnonzero(self.is_positive(users, neg))
        for _ in range(MAX_ROUNDS):
            if len(bad) == 0:
                return neg
            neg[bad] = rng.integers(0, self.n_items, size=len(bad), dtype=np.int64)
            bad = bad[self.is_positive(users[bad], neg[bad])]
        raise SamplingError(f"negative sampling did not finish in {MAX_ROUNDS} rounds; a user "
                            f"has almost every item in training")

    def epoch(self, rng: np.random.Generator) -> np.ndarray:
        """All training pairs with fresh negatives, shuffled: int64 [N, 3] (u, i⁺, i⁻)."""
        neg = self.negatives(self.pairs[:, 0], rng)
        triples = np.column_stack([self.pairs, neg])
        return triples[rng.permutation(len(triples))]

    def batches(self, rng: np.random.Generator, batch_size: int,
                device: torch.device | str = "cpu") -> Iterator[tuple[Tensor, Tensor, Tensor]]:
        """One epoch of (users [B], pos [B], neg [B]) int64 tensors; the last batch may be
        smaller. The whole epoch is drawn up front, so the generator advances the same way
        however many batches are consumed."""
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        t = torch.from_numpy(self.epoch(rng)).to(device)
        for start in range(0, len(t), batch_size):
            b = t[start:start + batch_size]
            yield b[:, 0], b[:, 1], b[:, 2]


def train_pairs(matrix: sp.spmatrix) -> np.ndarray:
    """(user, item) pairs of a sparse matrix's nonzeros, int64 [N, 2], row-major order."""
    m = sp.csr_matrix(matrix)
    rows = np.repeat(np.arange(m.shape[0], dtype=np.int64), np.diff(m.indptr))
    return np.column_stack([rows, m.indices.astype(np.int64)])
