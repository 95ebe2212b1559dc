"""Chronological leave-one-out, the protocol LC-Rec evaluates on, and its metrics.

Per user, the positive interactions in time order (ties broken by item id, ascending):
the last item is the test target, the second to last the validation target, and the rest
the history; a prompt shows at most ``max_history`` of its most recent items. Before the
split, users and items with fewer than ``k`` interactions are removed until none is left
(``k``-core, LC-Rec: 5). Ranking is over all items; as LC-Rec's ``test.py`` the history
is not masked. With one target per user, HR@K (= Recall@K) is 1 when the target ranks in
the top K, and NDCG@K is ``1 / log2(rank + 2)`` there (rank 0-based), 0 otherwise.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

from facelib.data import RecDataset
from facelib.eval.metrics import topk_metrics

HR_KS = (1, 5, 10)   # LC-Rec's HR@K
NDCG_KS = (5, 10)    # LC-Rec's NDCG@K
SPLITS = ("valid", "test")
K_CORE = 5           # LC-Rec's k-core filter
MAX_HISTORY = 20     # LC-Rec's most recent history items in a prompt


def k_core(pairs: np.ndarray, k: int) -> np.ndarray:
    """Mask [N] of the (user, item) ``pairs`` [N, 2] kept by iterative ``k``-core
    filtering: every kept user and item has at least ``k`` kept interactions."""
    pairs = np.asarray(pairs, dtype=np.int64)
    keep = np.ones(len(pairs), dtype=bool)
    while True:
        users = np.bincount(pairs[keep, 0], minlength=int(pairs[:, 0].max(initial=-1)) + 1)
        items = np.bincount(pairs[keep, 1], minlength=int(pairs[:, 1].max(initial=-1)) + 1)
        drop = keep & ((users[pairs[:, 0]] < k) | (items[pairs[:, 1]] < k))
        if not drop.any():
            return keep
        keep &= ~drop


@dataclass(frozen=True)
class LeaveOneOut:
    """A leave-one-out split over contiguous ids ``0..n_users-1`` / ``0..n_items-1``.

    Attributes:
        user_ids: [n_users] int64, the source dataset's user id of each user.
        item_ids: [n_items] int64, the source dataset's item id of each item.
        sequences: per user, its items [L_u >= 3] int64 in time order.
    """

    user_ids: np.ndarray
    item_ids: np.ndarray
    sequences: tuple[np.ndarray, ...]

    @property
    def n_users(self) -> int:
        return len(self.user_ids)

    @property
    def n_items(self) -> int:
        return len(self.item_ids)

    def targets(self, split: str) -> np.ndarray:
        """[n_users] int64: the validation (second to last) or test (last) item."""
        return np.array([seq[_cut(split)] for seq in self.sequences], dtype=np.int64)

    def histories(self, split: str, max_history: int | None = None) -> list[np.ndarray]:
        """Per user, the items before the ``split`` target, oldest first; the most recent
        ``max_history`` of them when given (a prompt's history)."""
        cut = _cut(split)
        out = [seq[:cut] for seq in self.sequences]
        return [h[-max_history:] for h in out] if max_history else out

    def train_pairs(self) -> np.ndarray:
        """[N, 2] (user, item) of every history item before the validation target: what a
        model trains on."""
        histories = self.histories("valid")
        users = np.repeat(np.arange(self.n_users), [len(h) for h in histories])
        return np.stack([users, np.concatenate(histories)], axis=1).astype(np.int64)


def _cut(split: str) -> int:
    if split not in SPLITS:
        raise ValueError(f"unknown leave-one-out split {split!r}; choose one of "
                         f"{', '.join(SPLITS)}")
    return -2 if split == "valid" else -1


def leave_one_out(pairs: np.ndarray, times: np.ndarray, k: int = K_CORE) -> LeaveOneOut:
    """Split positive ``pairs`` [N, 2] (user, item) with interaction ``times`` [N] into a
    chronological leave-one-out split after ``k``-core filtering (ids renumbered in
    ascending order of the source ids). Raises ValueError when nothing survives."""
    pairs = np.asarray(pairs, dtype=np.int64)
    times = np.asarray(times, dtype=np.int64)
    if pairs.ndim != 2 or pairs.shape[1] != 2 or times.shape != (len(pairs),):
        raise ValueError(f"pairs must be [N, 2] and times [N], got {pairs.shape} and "
                         f"{times.shape}")
    if k < 3:
        raise ValueError(f"k = {k}: leave-one-out needs k >= 3 (history, valid, test)")
    keep = k_core(pairs, k)
    pairs, times = pairs[keep], times[keep]
    if not len(pairs):
        raise ValueError(f"no interactions survive {k}-core filtering; lower k")
    user_ids, users = np.unique(pairs[:, 0], return_inverse=True)
    item_ids, items = np.unique(pairs[:, 1], return_inverse=True)
    order = np.lexsort((items, times, users))  # by user, then time, then item id
    users, items = users[order], items[order]
    bounds = np.flatnonzero(np.diff(users)) + 1
    sequences = tuple(np.split(items.astype(np.int64), bounds))
    return LeaveOneOut(user_ids.astype(np.int64), item_ids.astype(np.int64), sequences)


def split_dataset(ds: RecDataset, k: int = K_CORE) -> LeaveOneOut:
    """The leave-one-out split of a processed dataset: all its positive interactions (the
    3:1:1 split's train, validation and test together) with their timestamps. Ids are the
    dataset's own (``user_ids`` / ``item_ids`` map back to them)."""
    pairs = np.concatenate([ds.split(s) for s in ("train", "valid", "test")])
    times = np.concatenate([ds.times(s) for s in ("train", "valid", "test")])
    return leave_one_out(pairs, times, k)


def loo_metrics(top: np.ndarray, targets: np.ndarray, n_items: int) -> dict[str, float]:
    """Mean HR@{1, 5, 10} and NDCG@{5, 10} of ranked lists against one target per user,
    through the study's top-K metric code (:func:`facelib.eval.metrics.topk_metrics`).

    Args:
        top: int [U, w] item ids per user, best first, padded with -1 (w >= 10, or all
            items); a generator's beam-limited list is padded.
        targets: int [U], the target item of each row.
        n_items: I, the item count.
    """
    targets = np.asarray(targets, dtype=np.int64)
    truth = sp.csr_matrix((np.ones(len(targets)), (np.arange(len(targets)), targets)),
                          shape=(len(targets), n_items))
    per_user = topk_metrics(top, truth, ks=sorted({*HR_KS, *NDCG_KS}), metrics=("hr", "ndcg"))
    names = [f"hr@{k}" for k in HR_KS] + [f"ndcg@{k}" for k in NDCG_KS]
    return {name: float(per_user[name].mean()) for name in names}
