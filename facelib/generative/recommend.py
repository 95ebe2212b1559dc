"""Recommending by generation, and scoring it on both protocols.

A generative recommender (LC-Rec, Semantic Convergence) turns a user's history into a
prompt, and a language-model backend generates the next item's index under a trie of the
legal indices (:mod:`facelib.generative.beam`); the beam's complete items, best first by
sequence log-probability, are its ranked list. A list is at most ``beam`` long: these
candidates are beam-limited, unlike the full rankings of the embedding models.

- Leave-one-out: the prompt holds the most recent ``MAX_HISTORY`` items before the target;
  HR/NDCG against the one target (:func:`~facelib.generative.leave_one_out.loo_metrics`).
- 3:1:1 (``related-systems.md`` §0): the history is the user's training items in time
  order; the beam is at least 50; generated training items are dropped and the first 20
  distinct legal items kept; Recall/NDCG@{5, 10, 20} with the study's metric code.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

from facelib.data import RecDataset
from facelib.eval import KS
from facelib.eval.metrics import topk_metrics
from facelib.generative.backend import GenerativeBackend
from facelib.generative.beam import IndexTrie
from facelib.generative.codes import Example, index_string
from facelib.generative.leave_one_out import HR_KS, MAX_HISTORY, NDCG_KS, LeaveOneOut, loo_metrics
from facelib.generative.run import PROTOCOLS
from facelib.generative.tasks import train_histories

RATIO_TOP = max(KS)  # items kept per user on the 3:1:1 split (its Recall/NDCG@20)
LOO_WIDTH = max(HR_KS + NDCG_KS)  # columns leave-one-out lists need (shorter: -1 padded)
RATIO_MIN_BEAM = 50  # related-systems.md §0: constrained beam >= 50 on the 3:1:1 split

# the codes [L] of each history item, oldest first -> the prompt text
PromptFn = Callable[[Sequence[Sequence[int]]], str]


def generate_top(backend: GenerativeBackend, histories: Sequence[np.ndarray],
                 codes: np.ndarray, prompt: PromptFn, trie: IndexTrie, beam: int,
                 drop: Sequence[np.ndarray] | None = None, width: int | None = None,
                 batch: int = 32) -> np.ndarray:
    """Ranked item lists [U, width] (padded with -1) generated for each history.

    Args:
        histories: per user, item ids [h] (oldest first) shown in its prompt.
        codes: [I, L] each item's index (the trie's items are rows of it).
        drop: per user, item ids never to recommend (3:1:1: its training items).
        width: items kept per user (default ``beam``).
    """
    width = beam if width is None else width
    top = np.full((len(histories), width), -1, dtype=np.int64)
    for start in range(0, len(histories), batch):
        chunk = range(start, min(start + batch, len(histories)))
        prompts = [prompt([codes[i] for i in histories[u]]) for u in chunk]
        for u, found in zip(chunk, backend.generate_items(prompts, trie, beam)):
            banned = set() if drop is None else set(drop[u].tolist())
            kept = [item for item, _ in found if item not in banned][:width]
            top[u, :len(kept)] = kept
    return top


def evaluate_loo(backend: GenerativeBackend, split: LeaveOneOut, which: str,
                 codes: np.ndarray, prompt: PromptFn, trie: IndexTrie, beam: int,
                 max_history: int, users: np.ndarray | None = None) -> dict[str, float]:
    """Leave-one-out HR/NDCG of generation on ``which`` (valid | test) targets, over
    ``users`` (default all)."""
    users = np.arange(split.n_users) if users is None else users
    histories = split.histories(which, max_history)
    top = generate_top(backend, [histories[u] for u in users], codes, prompt, trie, beam,
                       width=max(beam, LOO_WIDTH))
    return loo_metrics(top, split.targets(which)[users], split.n_items)


def evaluate_ratio(backend: GenerativeBackend, train_histories: Sequence[np.ndarray],
                   truth: sp.csr_matrix, codes: np.ndarray, prompt: PromptFn,
                   trie: IndexTrie, beam: int, max_history: int,
                   users: np.ndarray | None = None) -> dict[str, float]:
    """3:1:1 Recall/NDCG@{5, 10, 20} of generation against ``truth`` [U, I] (validation or
    test items), over ``users`` with at least one held-out item (default all such)."""
    if beam < RATIO_MIN_BEAM:
        raise ValueError(f"beam = {beam}: the 3:1:1 protocol needs a beam of at least "
                         f"{RATIO_MIN_BEAM}; raise it")
    held = np.flatnonzero(np.diff(truth.indptr) > 0)
    users = held if users is None else np.intersect1d(users, held)
    hist = [train_histories[u][-max_history:] for u in users]
    top = generate_top(backend, hist, codes, prompt, trie, beam,
                       drop=[train_histories[u] for u in users], width=RATIO_TOP)
    per_user = topk_metrics(top, truth[users], ks=list(KS), metrics=("recall", "ndcg"))
    return {f"{m}@{k}": float(per_user[f"{m}@{k}"].mean())
            for m in ("recall", "ndcg") for k in KS}


@dataclass(frozen=True)
class ProtocolView:
    """What a generative recommender trains on and is scored against on one protocol.

    Attributes:
        protocol: ``"leave_one_out"`` or ``"ratio"`` (the study's 3:1:1 split).
        item_ids: [I'] the processed dataset's ids of this view's items (leave-one-out:
            the k-core's items, renumbered 0..I'-1; 3:1:1: all items).
        train_sequences: per user, the training items (view ids) in time order.
        select: the validation key early stopping watches.
    """

    protocol: str
    item_ids: np.ndarray
    train_sequences: list[np.ndarray]
    select: str
    split: LeaveOneOut | None = None
    truth: dict[str, sp.csr_matrix] | None = None   # 3:1:1: "valid"/"test" -> [U, I]

    @property
    def n_users(self) -> int:
        return len(self.train_sequences)

    def evaluate(self, backend: GenerativeBackend, which: str, codes: np.ndarray,
                 prompt: PromptFn, trie: IndexTrie, beam: int,
                 users: np.ndarray | None = None) -> dict[str, float]:
        """The protocol's metrics of generation on ``which`` (valid | test)."""
        if self.split is not None:
            return evaluate_loo(backend, self.split, which, codes, prompt, trie, beam,
                                MAX_HISTORY, users)
        assert self.truth is not None
        return evaluate_ratio(backend, self.train_sequences, self.truth[which], codes,
                              prompt, trie, beam, MAX_HISTORY, users)

    def next_item_examples(self, which: str, codes: np.ndarray,
                           prompt: PromptFn) -> list[Example]:
        """The ``which`` (valid | test) targets as sequential examples, for a teacher-forced
        loss: per user, the prompt of its history as :meth:`evaluate` builds it and each
        held-out item's index [L] (``codes`` [I, L]) as the response (leave-one-out: one
        per user; 3:1:1: one per held-out item, users without one skipped)."""
        if self.split is not None:
            histories = self.split.histories(which, MAX_HISTORY)
            pairs = zip(histories, self.split.targets(which))
            return [Example("seq", prompt([codes[i] for i in h]), index_string(codes[t]))
                    for h, t in pairs]
        assert self.truth is not None
        truth = self.truth[which].tocsr()
        out = []
        for u, seq in enumerate(self.train_sequences):
            held = truth.indices[truth.indptr[u]:truth.indptr[u + 1]]
            if len(held):
                text = prompt([codes[i] for i in seq[-MAX_HISTORY:]])
                out.extend(Example("seq", text, index_string(codes[t])) for t in held)
        return out


def protocol_view(protocol: str, ds: RecDataset, split: LeaveOneOut) -> ProtocolView:
    """The leave-one-out view (``split``) or the 3:1:1 view (``ds``'s own split, histories
    of training items by timestamp)."""
    if protocol == "leave_one_out":
        return ProtocolView(protocol, split.item_ids, split.histories("valid"), "ndcg@10",
                            split=split)
    if protocol == "ratio":
        return ProtocolView(protocol, np.arange(ds.n_items, dtype=np.int64),
                            train_histories(ds.train, ds.times("train"), ds.n_users),
                            "recall@20",
                            truth={s: ds.matrix(s).tocsr() for s in ("valid", "test")})
    raise ValueError(f"unknown protocol {protocol!r}; choose one of {', '.join(PROTOCOLS)}")


def validation_users(view: ProtocolView, n: int, rng: np.random.Generator) -> np.ndarray | None:
    """A fixed random subset of ``n`` users scored at each validation (all when 0 or
    more than there are): generation is the costly part of a validation."""
    if n <= 0 or n >= view.n_users:
        return None
    return np.sort(rng.choice(view.n_users, size=n, replace=False))
