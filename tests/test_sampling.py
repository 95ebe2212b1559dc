"""BPR negative sampling: never a training item, one per interaction, seeded, batched."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from facelib.models.sampling import BPRSampler, SamplingError, train_pairs


def test_negatives_never_in_the_users_training_items(synthetic_ds):
    ds = synthetic_ds
    sampler = BPRSampler(ds.train, ds.n_items)
    triples = sampler.epoch(np.random.default_rng(0))
    assert triples.shape == (len(ds.train), 3) and triples.dtype == np.int64
    train_sets = ds.user_items("train")
    bad = [(u, n) for u, _, n in triples if n in set(train_sets[u].tolist())]
    assert not bad
    assert triples[:, 2].min() >= 0 and triples[:, 2].max() < ds.n_items
    # every training pair appears exactly once, in shuffled order
    assert sorted(map(tuple, triples[:, :2].tolist())) == sorted(map(tuple, ds.train.tolist()))
    assert not np.array_equal(triples[:, :2], ds.train)


def test_dense_user_gets_its_only_negative():
    # user 0 has every item but 3 in training: rejection must keep redrawing until it hits 3
    n_items = 50
    pairs = np.array([[0, i] for i in range(n_items) if i != 3] + [[1, 0]], dtype=np.int64)
    sampler = BPRSampler(pairs, n_items)
    neg = sampler.negatives(pairs[:, 0], np.random.default_rng(1))
    assert (neg[pairs[:, 0] == 0] == 3).all()
    assert (neg[pairs[:, 0] == 1] != 0).all()


def test_user_with_every_item_is_an_error():
    pairs = np.array([[0, 0], [0, 1], [1, 0]], dtype=np.int64)
    with pytest.raises(SamplingError, match="user 0 interacted with all 2 items"):
        BPRSampler(pairs, 2)


def test_seeded_and_uniform(synthetic_ds):
    ds = synthetic_ds
    sampler = BPRSampler(ds.train, ds.n_items)
    a = sampler.epoch(np.random.default_rng(5))
    b = sampler.epoch(np.random.default_rng(5))
    c = sampler.epoch(np.random.default_rng(6))
    assert np.array_equal(a, b) and not np.array_equal(a, c)
    # uniform over non-training items: many epochs of one user's negatives cover the items
    rng = np.random.default_rng(0)
    users = np.zeros(20000, dtype=np.int64)
    counts = np.bincount(sampler.negatives(users, rng), minlength=ds.n_items)
    allowed = np.setdiff1d(np.arange(ds.n_items), ds.user_items("train")[0])
    assert (counts[allowed] > 0).all()
    expected = len(users) / len(allowed)
    assert counts[allowed].min() > 0.5 * expected and counts[allowed].max() < 1.6 * expected


def test_batches_cover_one_epoch(synthetic_ds):
    ds = synthetic_ds
    sampler = BPRSampler(ds.train, ds.n_items)
    batches = list(sampler.batches(np.random.default_rng(0), batch_size=500))
    sizes = [len(u) for u, _, _ in batches]
    assert sizes[:-1] == [500] * (len(sizes) - 1) and sum(sizes) == len(ds.train)
    u, p, n = (torch.cat(x) for x in zip(*batches))
    assert u.dtype == torch.int64
    assert torch.equal(torch.from_numpy(sampler.epoch(np.random.default_rng(0))),
                       torch.stack([u, p, n], 1))


def test_train_pairs_roundtrip(synthetic_ds):
    pairs = train_pairs(synthetic_ds.matrix("train"))
    assert sorted(map(tuple, pairs.tolist())) == sorted(map(tuple, synthetic_ds.train.tolist()))
