"""Full-ranking evaluation: hand-computed cases pin Recall@K / NDCG@K and the masking."""

from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.sparse as sp
import torch

from facelib.eval import Evaluator, evaluate
from facelib.models import MostPopular


pytestmark = pytest.mark.usefixtures("one_thread")


def _csr(rows: dict[int, list[int]], shape: tuple[int, int]) -> sp.csr_matrix:
    r = [u for u, items in rows.items() for _ in items]
    c = [i for items in rows.values() for i in items]
    return sp.csr_matrix((np.ones(len(r), np.float32), (r, c)), shape=shape)


class FixedScores:
    """A scorer handing out rows of a fixed score matrix (by reference, no copy)."""

    def __init__(self, scores: np.ndarray) -> None:
        self.scores = torch.tensor(scores, dtype=torch.float32)

    def score(self, users: torch.Tensor) -> torch.Tensor:
        return self.scores[users]


def _dcg(ranks: list[int]) -> float:
    return sum(1.0 / math.log2(r + 1) for r in ranks)


@pytest.fixture
def hand_case():
    """4 users x 6 items; user 2 has no ground truth (not evaluated)."""
    scores = np.array([
        [0.9, 0.8, 0.7, 0.6, 0.5, 0.4],  # u0: item 0 masked -> ranking 1,2,3,4,5
        [0.1, 0.2, 0.3, 0.4, 0.5, 0.6],  # u1: items 5,4 masked -> ranking 3,2,1,0
        [0.5, 0.5, 0.5, 0.5, 0.5, 0.5],  # u2: no ground truth
        [0.9, 0.8, 0.7, 0.6, 0.5, 0.4],  # u3: nothing masked -> ranking 0,1,2,...
    ])
    train = _csr({0: [0], 1: [5, 4], 2: [0], 3: []}, (4, 6))
    truth = _csr({0: [1, 3, 5], 1: [1], 3: [0, 1, 2, 3, 4]}, (4, 6))
    return scores, train, truth


def test_hand_computed_recall_and_ndcg(hand_case):
    scores, train, truth = hand_case
    per = Evaluator(train, truth, ks=(1, 3)).per_user(FixedScores(scores))
    assert per.users.tolist() == [0, 1, 3]
    # u0: top3 = [1, 2, 3], hits at ranks 1 and 3, |G| = 3
    # u1: top3 = [3, 2, 1], hit at rank 3, |G| = 1 -> IDCG over min(3, 1) = 1 rank
    # u3: top3 = [0, 1, 2], all hits, |G| = 5 -> recall 3/5 (denominator |G|, not min(K,|G|))
    expected = {
        "recall@1": [1 / 3, 0.0, 1 / 5],
        "recall@3": [2 / 3, 1.0, 3 / 5],
        "ndcg@1": [1.0, 0.0, 1.0],
        "ndcg@3": [_dcg([1, 3]) / _dcg([1, 2, 3]), _dcg([3]) / _dcg([1]), 1.0],
    }
    for key, values in expected.items():
        np.testing.assert_allclose(per.values[key], values, rtol=1e-12, err_msg=key)
    means = Evaluator(train, truth, ks=(1, 3))(FixedScores(scores))
    assert means["recall@3"] == pytest.approx((2 / 3 + 1 + 3 / 5) / 3)
    assert means["ndcg@3"] == pytest.approx(np.mean(expected["ndcg@3"]))


def test_scorer_data_is_not_modified(hand_case):
    scores, train, truth = hand_case
    scorer = FixedScores(scores)
    before = scorer.scores.clone()
    Evaluator(train, truth, ks=(1, 3))(scorer)
    assert torch.equal(scorer.scores, before)


def test_training_items_are_masked_validation_items_stay_candidates():
    # user 0: trains on item 0, validates on item 1, tests on item 2; scores 0 > 1 > 2 > ...
    scores = np.array([[1.0, 0.9, 0.8, 0.1, 0.0]])
    train = _csr({0: [0]}, (1, 5))
    valid = _csr({0: [1]}, (1, 5))
    test = _csr({0: [2]}, (1, 5))
    v = evaluate(FixedScores(scores), train, valid, ks=(1,))
    assert v["recall@1"] == 1.0  # item 0 (train, top score) masked -> valid item first
    t = evaluate(FixedScores(scores), train, test, ks=(1, 2))
    # at test time the validation item is NOT masked: it takes rank 1, the test item rank 2
    assert t["recall@1"] == 0.0 and t["recall@2"] == 1.0
    assert t["ndcg@2"] == pytest.approx(1 / math.log2(3))


def _naive(scores, train, truth, ks):
    """Per-user loop reference implementation (tests only)."""
    out = {f"{m}@{k}": [] for m in ("recall", "ndcg") for k in ks}
    for u in range(scores.shape[0]):
        gt = set(truth[u].indices.tolist())
        if not gt:
            continue
        s = scores[u].astype(np.float64).copy()
        s[train[u].indices] = -np.inf
        order = np.argsort(-s, kind="stable")
        for k in ks:
            top = order[:k]
            hits = [1.0 if i in gt else 0.0 for i in top]
            out[f"recall@{k}"].append(sum(hits) / len(gt))
            dcg = sum(h / math.log2(r + 2) for r, h in enumerate(hits))
            idcg = sum(1 / math.log2(r + 2) for r in range(min(k, len(gt))))
            out[f"ndcg@{k}"].append(dcg / idcg)
    return {k: float(np.mean(v)) for k, v in out.items()}


@pytest.mark.parametrize("batch_size", [1, 7, 1000])
def test_matches_naive_reference_for_any_batch_size(batch_size):
    rng = np.random.default_rng(0)
    n_users, n_items = 40, 30
    scores = rng.permutation(n_users * n_items).reshape(n_users, n_items).astype(np.float32)
    dense = rng.random((n_users, n_items))
    train = sp.csr_matrix((dense < 0.2).astype(np.float32))
    truth = sp.csr_matrix(((dense >= 0.2) & (dense < 0.35)).astype(np.float32))
    got = Evaluator(train, truth, batch_size=batch_size)(FixedScores(scores))
    want = _naive(scores, train, truth, (5, 10, 20))
    assert got.keys() == want.keys()
    for k in want:
        assert got[k] == pytest.approx(want[k], rel=1e-9), k


def test_embeddings_pair_and_per_user_mean_agree():
    rng = np.random.default_rng(1)
    u, i = torch.randn(25, 4), torch.randn(30, 4)
    dense = rng.random((25, 30))
    train = sp.csr_matrix((dense < 0.3).astype(np.float32))
    truth = sp.csr_matrix((dense > 0.9).astype(np.float32))
    ev = Evaluator(train, truth)
    per = ev.per_user((u, i))
    assert set(per.values) == {f"{m}@{k}" for m in ("recall", "ndcg") for k in (5, 10, 20)}
    assert len(per.users) == (truth.getnnz(axis=1) > 0).sum()
    assert per.mean() == ev((u, i))
    want = _naive((u @ i.T).numpy(), train, truth, (5, 10, 20))
    for k in want:
        assert per.mean()[k] == pytest.approx(want[k], rel=1e-6)


def test_most_popular_ranks_by_training_counts():
    train = _csr({0: [1], 1: [1, 2], 2: [1, 2, 3], 3: [1, 2, 3, 0]}, (4, 5))  # 1, 4, 3, 2, 0
    truth = _csr({0: [0], 1: [4], 3: [4]}, (4, 5))
    pop = MostPopular(train)
    assert pop.popularity.tolist() == [1, 4, 3, 2, 0]
    per = Evaluator(train, truth, ks=(1, 4)).per_user(pop)
    # u0 ranks 2, 3, 0, 4 (item 0 third); u1 ranks 3, 0, 4; u3 has only item 4 left
    assert per.values["recall@1"].tolist() == [0.0, 0.0, 1.0]
    assert per.values["recall@4"].tolist() == [1.0, 1.0, 1.0]
    np.testing.assert_allclose(per.values["ndcg@4"], [0.5, 0.5, 1.0])


def test_bad_arguments_are_one_liners():
    m = _csr({0: [0]}, (1, 3))
    with pytest.raises(ValueError, match="shapes differ"):
        Evaluator(m, _csr({0: [1]}, (1, 4)))
    with pytest.raises(ValueError, match="positive cut-offs"):
        Evaluator(m, m, ks=(0,))
