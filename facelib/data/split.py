"""Implicit feedback and the seeded, per-user stratified 3:1:1 split (RLMRec protocol).

Every positive interaction goes to train, validation or test. The split is stratified per
user: a user with n >= 3 positives gets ``round(n * r_val)`` (at least 1) validation and
``round(n * r_test)`` (at least 1) test interactions and keeps the rest (at least 1) for
training; users with fewer than 3 positives keep all of them in training. Validation and
test interactions of items that ended up with no training interaction then move to
training, so every user and every item has at least one training interaction.
"""

from __future__ import annotations

import numpy as np


def split_interactions(
    pairs: np.ndarray,
    n_users: int,
    n_items: int,
    seed: int,
    ratios: tuple[float, float, float] = (3.0, 1.0, 1.0),
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Split positive ``pairs`` [N, 2] (user, item) into train/valid/test pair arrays.

    Vectorised: one random key per interaction, a lexsort by (user, key), and the rank of
    each interaction inside its user's block decides its split. Deterministic per ``seed``.
    """
    pairs = np.asarray(pairs, dtype=np.int64)
    if pairs.ndim != 2 or pairs.shape[1] != 2:
        raise ValueError(f"pairs must have shape [N, 2], got {pairs.shape}")
    if len(ratios) != 3 or min(ratios) < 0 or ratios[0] <= 0:
        raise ValueError(f"ratios must be three non-negative numbers with train > 0, got {ratios}")
    total = float(sum(ratios))
    r_val, r_test = ratios[1] / total, ratios[2] / total

    rng = np.random.default_rng(seed)
    key = rng.random(len(pairs))
    order = np.lexsort((key, pairs[:, 0]))
    pairs = pairs[order]
    users = pairs[:, 0]

    counts = np.bincount(users, minlength=n_users)
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    rank = np.arange(len(pairs)) - starts[users]

    n = counts[users]
    eligible = n >= 3
    n_val = np.where(eligible, np.maximum(np.rint(n * r_val), 1 if r_val > 0 else 0), 0)
    n_test = np.where(eligible, np.maximum(np.rint(n * r_test), 1 if r_test > 0 else 0), 0)
    n_train = n - n_val - n_test
    # keep at least one training interaction per user (only binds for tiny n)
    short = n_train < 1
    n_test = np.where(short, n_test - (1 - n_train), n_test)
    n_train = np.maximum(n_train, 1)

    part = np.where(rank < n_train, 0, np.where(rank < n_train + n_val, 1, 2))

    # items with no training interaction: move their held-out interactions to training
    train_items = np.zeros(n_items, dtype=bool)
    train_items[pairs[part == 0, 1]] = True
    part[~train_items[pairs[:, 1]]] = 0

    def _sorted(mask: np.ndarray) -> np.ndarray:
        sub = pairs[mask]
        return sub[np.lexsort((sub[:, 1], sub[:, 0]))]

    return _sorted(part == 0), _sorted(part == 1), _sorted(part == 2)
