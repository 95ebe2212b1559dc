"""Leave-one-out protocol (LC-Rec): order, ties, k-core, and HR/NDCG on hand-made lists."""

from __future__ import annotations

import math

import numpy as np
import pytest

from facelib.generative.leave_one_out import k_core, leave_one_out, loo_metrics


def test_k_core_is_iterative():
    # user 0 has 2 items; dropping it leaves item 2 with 2 users < 3, so user 2 then has
    # 2 items and goes too; users 1, 3, 4 and items 0, 1, 3 survive at k = 3
    pairs = np.array([(0, 0), (0, 2),
                      (1, 0), (1, 1), (1, 3),
                      (2, 2), (2, 1), (2, 0),
                      (3, 0), (3, 1), (3, 3),
                      (4, 1), (4, 3), (4, 2), (4, 0)])
    keep = k_core(pairs, 3)
    kept = pairs[keep]
    assert set(kept[:, 0]) == {1, 3, 4} and set(kept[:, 1]) == {0, 1, 3}
    assert np.bincount(kept[:, 0])[[1, 3, 4]].min() >= 3
    assert np.bincount(kept[:, 1]).max() >= 3
    assert k_core(pairs, 1).all()


def test_split_orders_by_time_then_item_id_and_holds_out_the_last_two():
    # three users x four items; user 5's items 7 and 3 tie at t = 20, user 6's all tie
    pairs = np.array([(5, 9), (5, 7), (5, 3), (5, 1),
                      (8, 1), (8, 3), (8, 7), (8, 9),
                      (6, 9), (6, 7), (6, 3), (6, 1)])
    times = np.array([40, 20, 20, 10, 3, 2, 1, 4, 0, 0, 0, 0])
    loo = leave_one_out(pairs, times, k=3)
    np.testing.assert_array_equal(loo.user_ids, [5, 6, 8])
    np.testing.assert_array_equal(loo.item_ids, [1, 3, 7, 9])
    seqs = [list(loo.item_ids[s]) for s in loo.sequences]
    # user 5: 1 (t10), then 3 and 7 at t20 (3 first: lower id), then 9; user 6: by id
    assert seqs == [[1, 3, 7, 9], [1, 3, 7, 9], [7, 3, 1, 9]]
    np.testing.assert_array_equal(loo.item_ids[loo.targets("test")], [9, 9, 9])
    np.testing.assert_array_equal(loo.item_ids[loo.targets("valid")], [7, 7, 1])
    assert [list(loo.item_ids[h]) for h in loo.histories("test")] == [
        [1, 3, 7], [1, 3, 7], [7, 3, 1]]
    assert [list(loo.item_ids[h]) for h in loo.histories("valid")] == [[1, 3], [1, 3], [7, 3]]
    assert [list(loo.item_ids[h]) for h in loo.histories("test", max_history=1)] == [
        [7], [7], [1]]
    np.testing.assert_array_equal(loo.train_pairs(),
                                  [(0, 0), (0, 1), (1, 0), (1, 1), (2, 2), (2, 1)])
    # the input order does not matter
    perm = np.random.default_rng(0).permutation(len(pairs))
    again = leave_one_out(pairs[perm], times[perm], k=3)
    assert all(np.array_equal(a, b) for a, b in zip(loo.sequences, again.sequences))


def test_split_errors_name_the_problem():
    with pytest.raises(ValueError, match="k >= 3"):
        leave_one_out(np.array([(0, 0)]), np.array([0]), k=2)
    with pytest.raises(ValueError, match="no interactions survive 5-core"):
        leave_one_out(np.array([(0, 0), (0, 1)]), np.array([0, 1]), k=5)
    with pytest.raises(ValueError, match="unknown leave-one-out split 'train'"):
        leave_one_out(np.array([(0, 0)] * 3), np.array([0, 1, 2]), k=3).targets("train")


def test_loo_metrics_on_hand_made_lists():
    # targets found at ranks 1, 4 and 8, one not in its (padded) list; 20 items
    top = np.full((4, 10), -1)
    top[0, :3] = [7, 1, 2]
    top[1, :5] = [0, 1, 2, 9, 4]
    top[2] = [10, 11, 12, 13, 14, 15, 16, 5, 17, 18]
    top[3, :2] = [3, 4]
    m = loo_metrics(top, np.array([7, 9, 5, 19]), n_items=20)
    assert m["hr@1"] == pytest.approx(1 / 4)
    assert m["hr@5"] == pytest.approx(2 / 4)
    assert m["hr@10"] == pytest.approx(3 / 4)
    assert m["ndcg@5"] == pytest.approx((1 + 1 / math.log2(5)) / 4)
    assert m["ndcg@10"] == pytest.approx((1 + 1 / math.log2(5) + 1 / math.log2(9)) / 4)
    assert list(m) == ["hr@1", "hr@5", "hr@10", "ndcg@5", "ndcg@10"]
