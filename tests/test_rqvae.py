"""LC-Rec's index stage: Sinkhorn, residual quantiser, RQ-VAE training, collision rounds."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import torch

from facelib.generative import rqvae
from facelib.generative.beam import IndexTrie
from facelib.generative.rqvae import (
    RQVAE,
    ResidualQuantizer,
    RQVAEConfig,
    assign_indices,
    collision_groups,
    collision_rate,
    sinkhorn,
    train_rqvae,
)

# 200 x 16 Gaussian items; a small RQ-VAE that trains in well under a second
SMALL = RQVAEConfig(hidden=(32,), code_dim=8, levels=3, codebook_size=8, kmeans_iters=20,
                    lr=3e-3, warmup_epochs=2, batch_size=64, max_epochs=30, eval_every=5,
                    patience=100)


@pytest.fixture(autouse=True)
def _single_thread(one_thread):
    """Tiny tensors: one torch thread is faster on a shared machine."""
    yield


@pytest.fixture(scope="module")
def items() -> torch.Tensor:
    return torch.randn(200, 16, generator=torch.Generator().manual_seed(0))


WIDE = replace(SMALL, levels=4, codebook_size=16)  # room enough for the rounds alone


def _train(items: torch.Tensor, config: RQVAEConfig):
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return train_rqvae(items, config, seed=0)
    finally:
        torch.set_num_threads(before)


@pytest.fixture(scope="module")
def small_run(items):
    """A 3 x 8 RQ-VAE trained on ``items`` with seed 0."""
    return _train(items, SMALL)


@pytest.fixture(scope="module")
def wide_run(items):
    """A 4 x 16 RQ-VAE trained on ``items`` with seed 0."""
    return _train(items, WIDE)


def test_sinkhorn_spreads_rows_uniformly_over_codes():
    n, k = 640, 64
    d = torch.rand(n, k, generator=torch.Generator().manual_seed(1))
    q = sinkhorn(d, 0.003, 50)
    assert q.shape == (n, k)
    torch.testing.assert_close(q.sum(1), torch.ones(n))
    torch.testing.assert_close(q.sum(0), torch.full((k,), n / k), rtol=0.1, atol=0)
    counts = torch.bincount(q.argmax(1), minlength=k)
    assert counts.min() >= 0.5 * n / k and counts.max() <= 1.5 * n / k
    # argmin alone piles rows on few codes when distances favour them
    skewed = d + torch.linspace(0, 0.5, k)
    assert torch.bincount(skewed.argmin(1), minlength=k).max() > 3 * n / k
    assert torch.bincount(sinkhorn(skewed, 0.003, 50).argmax(1), minlength=k).max() <= 2 * n / k


def test_sinkhorn_log_domain_agrees(monkeypatch):
    d = torch.rand(50, 8, generator=torch.Generator().manual_seed(3))
    scaled = sinkhorn(d, 0.01, 50)
    monkeypatch.setattr(rqvae, "LOG_DOMAIN_BELOW", 1.0)  # force the log domain
    torch.testing.assert_close(sinkhorn(d, 0.01, 50), scaled)
    tiny = sinkhorn(d, 1e-4, 50)  # exp(2 / 1e-4) would overflow float64
    assert torch.isfinite(tiny).all()
    torch.testing.assert_close(tiny.sum(1), torch.ones(50))


def test_quantizer_residuals_and_straight_through_gradient():
    torch.manual_seed(0)
    rq = ResidualQuantizer(3, 4, 5, beta=0.25, sk_epsilons=(0, 0, 0.003), sk_iters=50)
    enc = torch.nn.Linear(6, 5)
    z = enc(torch.randn(20, 6))
    z_q, codes, _ = rq(z)
    assert codes.shape == (20, 3) and codes.dtype == torch.int64
    # z_q's value is the sum of the chosen codes; r_{i+1} = r_i - v_{c_i}
    expected = sum(rq.codebooks[i][codes[:, i]] for i in range(3))
    torch.testing.assert_close(z_q, expected)
    r = z.detach()
    for i in range(3):
        assert torch.equal(codes[:, i], torch.cdist(r, rq.codebooks[i]).argmin(1))
        r = r - rq.codebooks[i][codes[:, i]]
    z_q.sum().backward()
    assert enc.weight.grad is not None and enc.weight.grad.abs().sum() > 0
    torch.testing.assert_close(enc.bias.grad, torch.full((5,), 20.0))  # identity gradient


def test_quant_loss_pulls_codebooks_to_the_residuals():
    torch.manual_seed(0)
    rq = ResidualQuantizer(2, 8, 4, beta=0.25, sk_epsilons=(0, 0), sk_iters=50)
    z = torch.randn(100, 4) * 3
    opt = torch.optim.SGD(rq.parameters(), lr=1.0)

    def distance() -> float:
        z_q, _, _ = rq(z)
        return float((z - z_q).pow(2).sum(1).mean())

    start = distance()
    for _ in range(50):
        _, _, loss = rq(z)
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert distance() < 0.5 * start


def test_kmeans_init_is_deterministic_and_codebooks_settable():
    z = torch.randn(100, 4, generator=torch.Generator().manual_seed(2))
    books = []
    for _ in range(2):
        rq = ResidualQuantizer(2, 8, 4, beta=0.25, sk_epsilons=(0, 0), sk_iters=50)
        rq.kmeans_init(z, iters=20, random_state=7)
        books.append(torch.cat(list(rq.codebooks)))
    assert torch.equal(*books) and bool(rq.initialised)
    rq.set_codebook(1, torch.zeros(8, 4))
    assert torch.equal(rq.codebooks[1], torch.zeros(8, 4))
    with pytest.raises(ValueError, match="codebook 1 is"):
        rq.set_codebook(1, torch.zeros(3, 4))


def test_reconstruction_falls_and_the_log_is_complete(small_run):
    model, log = small_run
    assert isinstance(model, RQVAE) and not model.training
    recon = [row["recon_loss"] for row in log.history]
    assert recon[-1] < 0.9 * recon[0]
    assert log.stopped_by == "cap" and log.epoch == SMALL.max_epochs
    assert {"recon_loss", "quant_loss", "collision_rate", "usage", "usage_l3"} <= set(log.best)
    best = min(row["valid_collision_rate"] for row in log.history if "valid_recon_loss" in row)
    assert log.best["collision_rate"] == best  # LC-Rec: lowest collision rate kept


def test_same_seed_same_codes(items, small_run):
    again, _ = train_rqvae(items, SMALL, seed=0)
    first = assign_indices(small_run[0], items, replace(SMALL, resolve="nearest_unused"))
    second = assign_indices(again, items, replace(SMALL, resolve="nearest_unused"))
    assert np.array_equal(first.codes, second.codes)


def test_rounds_make_indices_distinct_and_the_trie_builds(items, wide_run):
    idx = assign_indices(wide_run[0], items, WIDE)
    assert idx.collision_rate_before > 0 and idx.rounds >= 1
    assert idx.collision_free and idx.fallback_items == 0 and idx.notes == []
    assert idx.codes.shape == (200, 4) and idx.codes.dtype == np.int64
    IndexTrie(idx.codes)
    summary = idx.summary()
    assert summary["collision_free"] and summary["collision_rate"] == 0.0
    assert len(summary["usage"]) == 4 and all(0 < u <= 1 for u in summary["usage"])


def test_collisions_left_are_reported_then_resolved_by_the_last_resort(items, small_run):
    model = small_run[0]
    with pytest.warns(RuntimeWarning, match="IndexTrie cannot be built"):
        kept = assign_indices(model, items, SMALL)  # 3 x 8: rounds alone do not suffice
    assert kept.collision_rate > 0 and kept.rounds == SMALL.max_collision_rounds
    assert kept.collision_rate <= kept.collision_rate_before
    assert kept.summary()["notes"] and not kept.summary()["collision_free"]
    with pytest.raises(ValueError, match="share an index"):
        IndexTrie(kept.codes)
    fixed = assign_indices(model, items, replace(SMALL, resolve="nearest_unused"))
    assert fixed.collision_free and fixed.fallback_items > 0
    assert fixed.collision_rate_after_rounds == kept.collision_rate
    IndexTrie(fixed.codes)
    # items the last resort left alone keep their codes
    untouched = ~np.isin(np.arange(200), np.concatenate(collision_groups(kept.codes)))
    assert np.array_equal(fixed.codes[untouched], kept.codes[untouched])


def test_duplicated_embeddings_collide_and_the_last_resort_records_it(items, wide_run):
    model = wide_run[0]
    dup = torch.cat([items[:50], items[:10], items[:5]])  # 15 exact duplicates
    config = replace(WIDE, resolve="nearest_unused")
    idx = assign_indices(model, dup, config)
    assert idx.collision_rate_before >= 15 / 65 - 1e-9
    # identical rows get identical Sinkhorn rows up to the rounding of batched products
    # (which differs by a row's place in a block on some CPUs): rounds separate few, if any
    left = round(idx.collision_rate_after_rounds * 65)
    assert left >= 10 and idx.rounds >= 1
    assert idx.collision_free and idx.fallback_items >= left
    assert "moved" in idx.notes[0]
    IndexTrie(idx.codes)
    # deterministic
    assert np.array_equal(idx.codes, assign_indices(model, dup, config).codes)


def test_resume_of_a_finished_run_restores_the_best_state(items, tmp_path):
    config = replace(SMALL, max_epochs=10)
    path = tmp_path / "rqvae.pt"
    first, log = train_rqvae(items, config, seed=0, checkpoint_path=path)
    again, resumed = train_rqvae(items, config, seed=0, checkpoint_path=path, resume=True)
    assert resumed.history == log.history and resumed.best_epoch == log.best_epoch
    for a, b in zip(first.state_dict().values(), again.state_dict().values()):
        assert torch.equal(a, b)


def test_collision_rate():
    assert collision_rate(np.array([[0, 1], [0, 1], [1, 1], [2, 0]])) == 0.25
    assert collision_rate(np.array([[0, 1], [1, 1]])) == 0.0


@pytest.mark.parametrize("field, value, message", [
    ("levels", 9, "RQVAEConfig.levels must be in 1..8"),
    ("codebook_size", 1, "RQVAEConfig.codebook_size must be >= 2"),
    ("sk_epsilon", 0.0, "RQVAEConfig.sk_epsilon must be > 0"),
    ("beta", -1.0, "RQVAEConfig.beta must be >= 0"),
    ("max_epochs", 0, "RQVAEConfig.max_epochs must be >= 1"),
    ("hidden", (64, 0), "RQVAEConfig.hidden must hold sizes >= 1"),
    ("select", "ndcg@10", "RQVAEConfig.select must name a validation key"),
    ("resolve", "suffix", "RQVAEConfig.resolve must be one of"),
])
def test_config_errors_are_one_line(field, value, message):
    with pytest.raises(ValueError, match=message) as info:
        RQVAEConfig(**{field: value})
    assert "\n" not in str(info.value)


def test_defaults_follow_lc_rec():
    c = RQVAEConfig()
    assert (c.hidden, c.code_dim, c.levels, c.codebook_size) == ((256, 128, 64), 32, 4, 64)
    assert (c.beta, c.kmeans_iters, c.sk_epsilon, c.sk_iters) == (0.25, 100, 0.003, 50)
    assert (c.lr, c.weight_decay, c.batch_size, c.max_collision_rounds) == (1e-3, 1e-4, 1024, 20)
    assert c.select == "-collision_rate" and RQVAEConfig(hidden=[8]).hidden == (8,)


def test_bad_embeddings_are_refused():
    with pytest.raises(ValueError, match="fewer than codebook_size"):
        train_rqvae(torch.randn(5, 4), SMALL, seed=0)
    with pytest.raises(ValueError, match="NaN or inf"):
        train_rqvae(torch.full((20, 4), float("nan")), SMALL, seed=0)


def test_nearest_unused_fills_every_free_index():
    """Eight identical items in a 3-level x 2-code space: the last resort must find all
    eight indices, also those whose path is not the argmin below a changed level."""
    from facelib.generative.rqvae import nearest_unused

    books = [torch.tensor([[0.0, 0.0], [1.0, 1.0]])] * 3
    residuals = torch.zeros(8, 3, 2)  # every residual nearest code 0 at every level
    codes, moved, above = nearest_unused(np.zeros((8, 3), dtype=np.int64), residuals, books)
    assert len({tuple(r) for r in codes.tolist()}) == 8
    assert moved == 7 and above == 6
    with pytest.raises(ValueError, match="no free index"):
        nearest_unused(np.zeros((9, 3), dtype=np.int64), torch.zeros(9, 3, 2), books)
