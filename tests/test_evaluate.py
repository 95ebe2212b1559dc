"""Full-ranking evaluation: hand-computed cases pin Recall@K / NDCG@K / HR@K, the masking,
and the agreement of the score path with the top-K (generator) path."""

from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.sparse as sp
import torch

from facelib.eval import KS, Evaluator, evaluate, topk_metrics
from facelib.eval.ranking import block_bounds
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


def _naive_per_user(scores, train, truth, ks, metrics=("recall", "ndcg")):
    """Per-user loop reference implementation (tests only): float64 [M] per key."""
    out = {f"{m}@{k}": [] for m in metrics for k in ks}
    for u in range(scores.shape[0]):
        gt = set(truth[u].indices.tolist())
        if not gt:
            continue
        s = scores[u].astype(np.float64).copy()
        s[train[u].indices] = -np.inf
        order = np.argsort(-s, kind="stable")
        for k in ks:
            top = order[:k]
            hits = [1.0 if i in gt and s[i] > -np.inf else 0.0 for i in top]
            dcg = sum(h / math.log2(r + 2) for r, h in enumerate(hits))
            idcg = sum(1 / math.log2(r + 2) for r in range(min(k, len(gt))))
            value = {"recall": sum(hits) / len(gt), "ndcg": dcg / idcg,
                     "hr": float(sum(hits) > 0)}
            for m in metrics:
                out[f"{m}@{k}"].append(value[m])
    return {k: np.array(v) for k, v in out.items()}


def _naive(scores, train, truth, ks):
    """Means of :func:`_naive_per_user`."""
    return {k: float(np.mean(v)) for k, v in _naive_per_user(scores, train, truth, ks).items()}


def _random_case(seed: int, n_users: int = 40, n_items: int = 30):
    """Distinct float32 scores (no ties), ~20% training and ~15% ground-truth density."""
    rng = np.random.default_rng(seed)
    scores = rng.permutation(n_users * n_items).reshape(n_users, n_items).astype(np.float32)
    dense = rng.random((n_users, n_items))
    train = sp.csr_matrix((dense < 0.2).astype(np.float32))
    truth = sp.csr_matrix(((dense >= 0.2) & (dense < 0.35)).astype(np.float32))
    return scores, train, truth


@pytest.mark.parametrize("batch_size", [1, 7, 1000])
def test_matches_naive_reference_for_any_batch_size(batch_size):
    scores, train, truth = _random_case(0)
    ev = Evaluator(train, truth, batch_size=batch_size, metrics=("recall", "ndcg", "hr"))
    got = ev.per_user(FixedScores(scores))
    want = _naive_per_user(scores, train, truth, (5, 10, 20), ("recall", "ndcg", "hr"))
    assert list(got.values) == list(want)
    for k in want:
        np.testing.assert_allclose(got.values[k], want[k], rtol=1e-12, atol=1e-12, err_msg=k)
    means = Evaluator(train, truth, batch_size=batch_size)(FixedScores(scores))
    assert list(means) == [f"{m}@{k}" for m in ("recall", "ndcg") for k in (5, 10, 20)]


@pytest.mark.parametrize("batch_size", [1, 7, 1000])
def test_embeddings_pair_matches_naive_per_user(batch_size):
    """The blocked in-place path of an embeddings pair against a per-user loop over the
    same float32 scores (the product is computed once, so ties cannot differ)."""
    rng = np.random.default_rng(2)
    u, i = torch.randn(300, 8), torch.randn(50, 8)
    dense = rng.random((300, 50))
    train = sp.csr_matrix((dense < 0.3).astype(np.float32))
    truth = sp.csr_matrix((dense > 0.85).astype(np.float32))
    ev = Evaluator(train, truth, batch_size=batch_size)
    per = ev.per_user((u, i))
    scores = torch.stack([u[r] @ i.T for r in range(300)]).numpy()  # row by row
    want = _naive_per_user(scores, train, truth, (5, 10, 20))
    for k in want:
        np.testing.assert_allclose(per.values[k], want[k], rtol=1e-12, atol=1e-12, err_msg=k)


def test_block_bounds_cover_rows_without_a_small_remainder():
    assert block_bounds(0, 4) == []
    assert block_bounds(10, 4) == [(0, 4), (4, 7), (7, 10)]
    assert block_bounds(8, 4) == [(0, 4), (4, 8)]
    assert block_bounds(3, 100) == [(0, 3)]


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
    with pytest.raises(ValueError, match="metrics must be distinct names"):
        Evaluator(m, m, metrics=("recall", "map"))
    with pytest.raises(ValueError, match="batch_size must be >= 1"):
        Evaluator(m, m, batch_size=0)


# --- top-K lists (the path a generator takes) -------------------------------------------

@pytest.fixture
def topk_case():
    """5 users x 6 items, ks = (1, 3); lists hand-made, metrics hand-computed below."""
    truth = _csr({0: [1, 3, 5],            # |G| = 3 = K
                  1: [4],                  # |G| = 1 < K (leave-one-out style)
                  2: [0, 1, 2, 3, 4],      # |G| = 5 > K
                  3: [5],                  # nothing produced (all padding)
                  4: [2, 3]}, (5, 6))      # |G| = 2 < K, no hit
    top = np.array([[1, 2, 3],
                    [0, 4, -1],            # two items produced, padded
                    [2, 5, 0],
                    [-1, -1, -1],
                    [0, 1, 4]])
    d = _dcg
    expected = {
        "recall@1": [1 / 3, 0.0, 1 / 5, 0.0, 0.0],
        "recall@3": [2 / 3, 1.0, 2 / 5, 0.0, 0.0],
        "ndcg@1": [1.0, 0.0, 1.0, 0.0, 0.0],
        "ndcg@3": [d([1, 3]) / d([1, 2, 3]), d([2]) / d([1]), d([1, 3]) / d([1, 2, 3]),
                   0.0, 0.0],
        "hr@1": [1.0, 0.0, 1.0, 0.0, 0.0],
        "hr@3": [1.0, 1.0, 1.0, 0.0, 0.0],
    }
    return top, truth, expected


def test_hand_made_topk_lists(topk_case):
    top, truth, expected = topk_case
    got = topk_metrics(top, truth, ks=(1, 3), metrics=("recall", "ndcg", "hr"))
    assert list(got) == list(expected)
    for key, values in expected.items():
        np.testing.assert_allclose(got[key], values, rtol=1e-12, atol=0, err_msg=key)
    # through the evaluator (no training items: nothing to mask), lists as a tensor
    ev = Evaluator(sp.csr_matrix(truth.shape), truth, ks=(1, 3), metrics=("recall", "ndcg", "hr"))
    per = ev.per_user_topk(torch.from_numpy(top))
    assert per.users.tolist() == [0, 1, 2, 3, 4]
    for key, values in expected.items():
        np.testing.assert_allclose(per.values[key], values, rtol=1e-12, atol=0, err_msg=key)
    # wider lists are cut at the largest K
    wide = np.column_stack([top, np.full(5, -1)])
    assert topk_metrics(wide, truth, ks=(1, 3))["recall@3"].tolist() == expected["recall@3"]


def test_hit_ratio_equals_recall_with_one_target_per_user():
    rng = np.random.default_rng(3)
    n_users, n_items = 50, 40
    truth = _csr({u: [int(rng.integers(n_items))] for u in range(n_users)}, (n_users, n_items))
    top = np.stack([rng.permutation(n_items)[:10] for _ in range(n_users)])
    got = topk_metrics(top, truth, ks=(1, 5, 10), metrics=("recall", "hr"))
    assert any(got["hr@10"]) and not all(got["hr@10"])  # a mix of hits and misses
    for k in (1, 5, 10):
        assert np.array_equal(got[f"hr@{k}"], got[f"recall@{k}"])


@pytest.mark.parametrize("top, match", [
    ([[1, 2, 1]], "lists item 1 more than once"),
    ([[1, -1, 2]], "item after padding"),
    ([[1, 2, 6]], r"must lie in \[0, 6\)"),
    ([[1, 2, -2]], r"must lie in \[0, 6\)"),
    ([[1, 2]], "pad each row with -1"),
    ([[1.0, 2.0, 3.0]], "integer array"),
    ([[1, 2, 3], [0, 1, 2]], "rows but truth has 1"),
])
def test_bad_topk_lists_are_rejected(top, match):
    truth = _csr({0: [1]}, (1, 6))
    with pytest.raises(ValueError, match=match):
        topk_metrics(np.array(top), truth, ks=(1, 3))


def test_evaluator_rejects_lists_for_other_users():
    truth = _csr({0: [1], 2: [3]}, (3, 6))
    ev = Evaluator(sp.csr_matrix((3, 6)), truth, ks=(2,))
    with pytest.raises(ValueError, match="M = 2 evaluated users"):
        ev.per_user_topk(np.array([[1, 2]] * 3))
    with pytest.raises(ValueError, match="more than once"):
        ev.per_user_topk(np.array([[1, 2], [3, 3]]))
    with pytest.raises(ValueError, match="is empty"):
        topk_metrics(np.array([[1, 2]] * 3), truth, ks=(2,))


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_score_path_and_topk_path_agree_exactly(seed):
    scores, train, truth = _random_case(seed, n_users=60, n_items=45)
    metrics = ("recall", "ndcg", "hr")
    ev = Evaluator(train, truth, batch_size=16, metrics=metrics)
    top = ev.topk(FixedScores(scores))
    # the lists are the masked argsort of the scores
    users = ev.users
    for row, u in enumerate(users):
        s = scores[u].astype(np.float64)
        s[train[u].indices] = -np.inf
        assert top[row].tolist() == np.argsort(-s, kind="stable")[:20].tolist()
    by_scores = ev.per_user(FixedScores(scores))
    by_lists = ev.per_user_topk(top.numpy())
    free = topk_metrics(top, truth[users], ks=KS, metrics=metrics)
    assert list(by_scores.values) == list(by_lists.values) == list(free)
    for k in by_scores.values:
        assert np.array_equal(by_scores.values[k], by_lists.values[k]), k
        assert np.array_equal(by_scores.values[k], free[k]), k



def test_users_with_fewer_candidates_than_k_get_padding():
    # 4 items, user 0 trains on 3 of them: one candidate left for a top-3
    train = _csr({0: [0, 1, 2], 1: [0]}, (2, 4))
    truth = _csr({0: [3], 1: [2, 3]}, (2, 4))
    scores = np.array([[4.0, 3.0, 2.0, 1.0], [4.0, 3.0, 2.0, 1.0]])
    ev = Evaluator(train, truth, ks=(3,), metrics=("recall", "ndcg", "hr"))
    top = ev.topk(FixedScores(scores))
    assert top.tolist() == [[3, -1, -1], [1, 2, 3]]
    per = ev.per_user(FixedScores(scores))
    assert per.values["recall@3"].tolist() == [1.0, 1.0]
    np.testing.assert_allclose(per.values["ndcg@3"],
                               [1.0, _dcg([2, 3]) / _dcg([1, 2])], rtol=1e-12)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_ranking_agrees_with_cpu():
    scores, train, truth = _random_case(4, n_users=200, n_items=120)
    cpu = Evaluator(train, truth, batch_size=64).per_user(FixedScores(scores))
    gpu = Evaluator(train, truth, batch_size=64, device="cuda").per_user(FixedScores(scores))
    for k in cpu.values:
        assert np.array_equal(cpu.values[k], gpu.values[k]), k


def test_hit_lookup_in_small_blocks_gives_the_same_values(monkeypatch):
    """Ground truth is looked up in dense blocks of rows; blocks of 1-3 rows must give
    what one block of all rows gives."""
    import facelib.eval.metrics as metrics_module

    scores, train, truth = _random_case(5)
    ev = Evaluator(train, truth, metrics=("recall", "ndcg", "hr"))
    want = ev.per_user(FixedScores(scores)).values
    for cells in (1, 2 * 30, 3 * 30 + 1):
        monkeypatch.setattr(metrics_module, "HIT_BLOCK_CELLS", cells)
        got = ev.per_user(FixedScores(scores)).values
        for k in want:
            assert np.array_equal(got[k], want[k]), (cells, k)
