"""Which users and items the align stage learns from, and its batches of distinct entities.

**Held-out entities.** The alignment pulls an entity's descriptor sentence towards its own
profile, so any descriptor study on an aligned entity measures the training data. With
``holdout = h > 0`` a seeded ``h`` share of the users and of the items is withheld from the
alignment as *validation* entities (the align stage's descriptor-quality signal, on which it
may early-stop) and another ``h`` share as *test* entities (what the interpret stage
reports on). Held-out entities still take part in BPR and in the map stage: only their
profile never reaches a loss. ``holdout = 0`` aligns every entity, as the paper does.

**Entity batches** (``align_batch: entities``). The reference aligns the 3B rows of each
BPR batch [users; pos; neg]: popular items appear many times per batch (in-batch duplicates
are false negatives, quirk 9.10) and an epoch aligns ~3 x |train| rows. Entity batches
instead cut one shuffled pass over the aligned users and items into batches of
``batch_size`` distinct entities: an align epoch is one pass over the entities, with no
duplicate negatives.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch
from torch import Tensor

PARTS = ("train", "valid", "test")


@dataclass(frozen=True)
class EntitySplit:
    """Sorted user and item ids per part (``train``: aligned; ``valid``; ``test``)."""

    users: dict[str, np.ndarray]
    items: dict[str, np.ndarray]

    def part_of(self, kind: str, n: int) -> np.ndarray:
        """The part name of every user (``kind="user"``) or item id 0..n-1: str [n]."""
        ids = self.users if kind == "user" else self.items
        out = np.full(n, "train", dtype=object)
        for part in ("valid", "test"):
            out[ids[part]] = part
        return out


def split_entities(n_users: int, n_items: int, holdout: float, seed: int) -> EntitySplit:
    """Hold out ``round(holdout * n)`` users (and items) as validation and as many as test,
    at random with ``seed``; the rest are aligned. ``holdout`` 0: all aligned."""
    if not 0.0 <= holdout < 0.5:
        raise ValueError(f"holdout must be in [0, 0.5), got {holdout}")
    gen = np.random.default_rng(seed)

    def parts(n: int) -> dict[str, np.ndarray]:
        k = int(round(holdout * n))
        perm = gen.permutation(n)
        return {"valid": np.sort(perm[:k]), "test": np.sort(perm[k:2 * k]),
                "train": np.sort(perm[2 * k:])}

    return EntitySplit(users=parts(n_users), items=parts(n_items))


@dataclass
class EntityBatches:
    """Batches of distinct entities: each epoch one shuffled pass over ``users`` and
    ``items`` (the aligned ids), cut into batches of ``batch_size``.

    :meth:`start_epoch` draws the epoch's order from the trainer's generator (so a resumed
    run draws the same) and returns the number of batches; :meth:`next` hands them out.
    """

    users: np.ndarray       # [U_a] aligned user ids
    items: np.ndarray       # [I_a] aligned item ids
    batch_size: int
    _queue: list[np.ndarray] = field(default_factory=list, repr=False)

    def __post_init__(self) -> None:
        if self.batch_size < 2:
            raise ValueError(f"entity batches need >= 2 entities, got {self.batch_size}")
        if len(self.users) + len(self.items) == 0:
            raise ValueError("no entity to align: lower the holdout")

    @property
    def n_entities(self) -> int:
        return len(self.users) + len(self.items)

    def steps(self) -> int:
        """Batches per epoch: ceil(entities / batch_size)."""
        return -(-self.n_entities // self.batch_size)

    def start_epoch(self, rng: np.random.Generator) -> int:
        """Shuffle users and items together (node ids: users, then items offset by
        ``2**40``) and queue the epoch's batches; return their number."""
        nodes = np.concatenate([self.users, self.items + (1 << 40)])
        nodes = nodes[rng.permutation(len(nodes))]
        self._queue = [nodes[s:s + self.batch_size] for s in range(0, len(nodes),
                                                                   self.batch_size)]
        return len(self._queue)

    def next(self, device: torch.device | str = "cpu") -> tuple[Tensor, Tensor]:
        """The next batch as (user ids [b_u], item ids [b_i]) int64 tensors."""
        if not self._queue:
            raise RuntimeError("the epoch's entity batches are used up; call start_epoch")
        batch = self._queue.pop(0)
        is_item = batch >= (1 << 40)
        users = torch.from_numpy(np.sort(batch[~is_item])).to(device)
        items = torch.from_numpy(np.sort(batch[is_item] - (1 << 40))).to(device)
        return users, items
