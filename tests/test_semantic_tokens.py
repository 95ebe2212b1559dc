"""Semantic Convergence (reconstructed): CF item embeddings -> codes in token space."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import torch

from facelib.generative.beam import IndexTrie
from facelib.generative.rqvae import RQVAEConfig
from facelib.generative.semantic_tokens import (
    LABEL,
    SemanticTokenizerConfig,
    SemanticTokens,
    snap_to_tokens,
    train_semantic_tokenizer,
)

CONFIG = SemanticTokenizerConfig(levels=3, codebook_size=8, kmeans_iters=20, lr=3e-3,
                                 warmup_epochs=2, batch_size=64, max_epochs=20, eval_every=5,
                                 patience=100)
N_ITEMS, N_TWINS, N_WORDS = 120, 20, 200


@pytest.fixture(autouse=True)
def _single_thread(one_thread):
    """Tiny tensors: one torch thread is faster on a shared machine."""
    yield


@pytest.fixture(scope="module")
def data():
    """item_emb [120, 8]: 100 Gaussian items and near-identical twins of items 0..19;
    token_emb [200, 16] and its words."""
    g = torch.Generator().manual_seed(0)
    base = torch.randn(N_ITEMS - N_TWINS, 8, generator=g)
    twins = base[:N_TWINS] + 1e-5 * torch.randn(N_TWINS, 8, generator=g)
    tokens = 0.5 * torch.randn(N_WORDS, 16, generator=g)
    return torch.cat([base, twins]), tokens, [f"word{i}" for i in range(N_WORDS)]


def _train(data, config: SemanticTokenizerConfig, seed: int = 0):
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return train_semantic_tokenizer(*data, config, seed)
    finally:
        torch.set_num_threads(before)


@pytest.fixture(scope="module")
def tied(data):
    return _train(data, CONFIG)


@pytest.fixture(scope="module")
def frozen(data):
    return _train(data, replace(CONFIG, mode="frozen"))


@pytest.mark.parametrize("run", ["tied", "frozen"])
def test_codes_are_collision_free_and_labelled(run, request):
    _, tokens, log = request.getfixturevalue(run)
    assert isinstance(tokens, SemanticTokens)
    assert tokens.codes.shape == (N_ITEMS, 3) and tokens.codes.dtype == np.int64
    assert tokens.indices.collision_free
    IndexTrie(tokens.codes)
    summary = tokens.summary()
    assert summary["system"] == LABEL == "Semantic Convergence (reconstructed)"
    assert summary["mode"] == run and summary["collision_rate"] == 0.0
    assert {"collision_rate_before", "rounds", "fallback_items", "recon_error"} <= set(summary)
    assert tokens.recon_error > 0 and log.stopped_by == "cap"
    assert len(tokens.item_words(0)) == 3 and all(w.startswith("word")
                                                  for w in tokens.item_words(0))


@pytest.mark.parametrize("run", ["tied", "frozen"])
def test_each_code_reads_as_its_nearest_token(run, request, data):
    model, tokens, _ = request.getfixturevalue(run)
    table, words = data[1], data[2]
    for level, book in enumerate(model.quantizer.codebooks):
        nearest = torch.cdist(book.detach(), table).argmin(1)
        assert tokens.words[level] == [words[i] for i in nearest.tolist()]
        assert np.array_equal(tokens.token_ids[level], nearest.numpy())
    item = 5
    assert tokens.item_words(item) == [tokens.words[lv][c]
                                       for lv, c in enumerate(tokens.codes[item])]


def test_frozen_codebooks_stay_token_embeddings(frozen, data):
    model, tokens, log = frozen
    table = data[1]
    for level, book in enumerate(model.quantizer.codebooks):
        assert not book.requires_grad
        ids = model.init_token_ids[level]
        assert torch.equal(book, table[ids])  # bit for bit: training never touched them
        assert len(set(ids.tolist())) == CONFIG.codebook_size  # distinct tokens per level
        assert np.array_equal(tokens.token_ids[level], ids.numpy())
    recon = [row["recon_loss"] for row in log.history]
    assert recon[-1] < recon[0]  # the linear maps learn
    assert all(row["align_loss"] == 0.0 for row in log.history)


def test_tied_codebooks_learn(tied, data):
    model, _, log = tied
    table = data[1]
    assert all(book.requires_grad for book in model.quantizer.codebooks)
    assert any(not torch.equal(book, table[model.init_token_ids[i]])
               for i, book in enumerate(model.quantizer.codebooks))
    recon = [row["recon_loss"] for row in log.history]
    assert recon[-1] < recon[0]


def test_alignment_keeps_tied_codes_near_their_words(data):
    config = replace(CONFIG, lr=1e-2, max_epochs=30)
    gaps = []
    for weight in (0.0, 10.0):
        model, _, log = _train(data, replace(config, align_weight=weight))
        gaps.append(torch.stack([torch.cdist(book.detach(), data[1]).min(1).values.mean()
                                 for book in model.quantizer.codebooks]).mean())
        assert log.best["align_loss"] > 0
    assert gaps[1] < 0.5 * gaps[0]


def test_near_identical_items_share_their_first_level_code(tied, frozen):
    for _, tokens, _ in (tied, frozen):
        first = tokens.codes[:, 0]
        assert np.array_equal(first[:N_TWINS], first[N_ITEMS - N_TWINS:])
        assert len(np.unique(first)) > 1  # not one code for everything


def test_same_seed_same_tokens(data, tied):
    _, again, _ = _train(data, CONFIG)
    assert np.array_equal(again.codes, tied[1].codes) and again.words == tied[1].words


def test_snap_picks_distinct_nearest_tokens():
    table = torch.tensor([[0.0, 0.0], [1.0, 0.0], [0.0, 1.0], [5.0, 5.0]])
    centres = torch.tensor([[0.1, 0.0], [0.0, 0.05], [0.9, 0.1]])
    # centre 1 (closest to any token) takes token 0; centre 0 then its next nearest,
    # token 1; centre 2 finds tokens 1 and 0 taken and takes token 2
    assert snap_to_tokens(centres, table).tolist() == [1, 0, 2]


def test_defaults_are_shared_with_rqvae():
    c, r = SemanticTokenizerConfig(), RQVAEConfig()
    for key in ("levels", "codebook_size", "beta", "kmeans_iters", "sk_epsilon", "sk_iters",
                "lr", "weight_decay", "batch_size", "max_collision_rounds"):
        assert getattr(c, key) == getattr(r, key)
    assert (c.mode, c.select, c.resolve) == ("tied", "-recon_loss", "nearest_unused")


@pytest.mark.parametrize("field, value, message", [
    ("mode", "learned", "SemanticTokenizerConfig.mode must be one of"),
    ("align_weight", -1.0, "SemanticTokenizerConfig.align_weight must be >= 0"),
    ("levels", 0, "SemanticTokenizerConfig.levels must be in 1..8"),
    ("sk_iters", 0, "SemanticTokenizerConfig.sk_iters must be >= 1"),
    ("select", "-collision", "SemanticTokenizerConfig.select must name a validation key"),
])
def test_config_errors_are_one_line(field, value, message):
    with pytest.raises(ValueError, match=message) as info:
        SemanticTokenizerConfig(**{field: value})
    assert "\n" not in str(info.value)


def test_bad_inputs_are_refused(data):
    items, table, words = data
    with pytest.raises(ValueError, match="one word per token_emb row"):
        train_semantic_tokenizer(items, table, words[:-1], CONFIG, 0)
    with pytest.raises(ValueError, match="lower codebook_size or add words"):
        train_semantic_tokenizer(items, table[:4], words[:4], CONFIG, 0)
