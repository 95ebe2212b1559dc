"""FACE's fast CPU paths against the paths they replace: same indices, same maths.

- :func:`greedy_assign` (candidates per concept) equals the masking loop and the
  reference's per-entity loop exactly, ties and C close to V included;
- :class:`ConceptLayer` equals ``nn.TransformerEncoderLayer`` (outputs, gradients and, with
  the same seed, dropout masks);
- one FACE map and align step of the fp32 fast path gives the old path's losses and
  gradients to 1e-5 (relative);
- ``fast_dropout`` and ``bf16`` (switches that change random draws or rounding) stay
  within stated bounds of the exact path.
"""

from __future__ import annotations

import copy
import platform

import pytest
import torch
import torch.nn.functional as F
from test_face import EMB_DIM, SMALL, batch, make_face, slow_greedy
from torch import Tensor, nn

import facelib.systems.face.model.quantizer as quantizer_module
from facelib.systems.face.model.module import FACE, FACEConfig
from facelib.systems.face.model.projection import concept_layers
from facelib.systems.face.model.quantizer import greedy_assign
from facelib.systems.face.model.dropout import FastDropout, bernoulli_mask, fast_dropout
from facelib.systems.face.model.heap import keep_freed_memory
from facelib.systems.face.model.quantizer import nearest_candidates, squared_distances

pytestmark = pytest.mark.usefixtures("one_thread")
FLOAT32 = {"bf16": False, "fast_dropout": False}  # the speed switches that change numerics, off


# ---------------------------------------------------------------------------- greedy
@torch.no_grad()
def greedy_assign_masked(z_e: Tensor, codebook: Tensor) -> Tensor:
    """The masking loop greedy_assign replaced (facelib before the candidate search): per
    concept, the [N, V] distances, taken words set to +inf, argmin (ties: lowest index)."""
    n, c_num, _ = z_e.shape
    taken = torch.zeros(n, codebook.shape[0], dtype=torch.bool)
    rows = torch.arange(n)
    out = torch.empty(n, c_num, dtype=torch.long)
    for c in range(c_num):
        dist = squared_distances(z_e[:, c], codebook).masked_fill_(taken, float("inf"))
        k = dist.argmin(1)
        taken[rows, k] = True
        out[:, c] = k
    return out


def random_case(gen: torch.Generator, integer: bool) -> tuple[Tensor, Tensor]:
    """z [N, C, D], codebook [V, D] with C <= V; integer entries force many exact ties."""
    n, v, d = (int(torch.randint(lo, hi, (1,), generator=gen)) for lo, hi in
               ((1, 30), (1, 25), (1, 5)))
    c = int(torch.randint(1, v + 1, (1,), generator=gen))
    if integer:
        return (torch.randint(-1, 2, (n, c, d), generator=gen).float(),
                torch.randint(-1, 2, (v, d), generator=gen).float())
    return torch.randn(n, c, d, generator=gen), torch.randn(v, d, generator=gen)


@pytest.mark.parametrize("integer", [False, True])
def test_fast_greedy_equals_masking_loop_and_reference_loop(integer: bool):
    gen = torch.Generator().manual_seed(3)
    for _ in range(150):
        z, codebook = random_case(gen, integer)
        fast = greedy_assign(z, codebook)
        assert torch.equal(fast, greedy_assign_masked(z, codebook))
        dist = squared_distances(z.reshape(-1, z.shape[-1]), codebook).reshape(
            *z.shape[:2], -1)
        assert torch.equal(fast, slow_greedy(dist))


def test_fast_greedy_with_duplicate_words_at_training_sizes_per_row():
    # float data, C = 16, each word present three times (exact distance ties), C close to V
    gen = torch.Generator().manual_seed(5)
    for vocab in (18, 60):
        codebook = torch.randn(vocab // 3, 24, generator=gen).repeat(3, 1)
        codebook = codebook[torch.randperm(vocab, generator=gen)]
        z = torch.randn(80, 16, 24, generator=gen)
        assert torch.equal(greedy_assign(z, codebook), greedy_assign_masked(z, codebook))


def test_fast_greedy_with_all_words_tied_and_c_equal_to_v():
    codebook = torch.zeros(7, 3)  # every word at the same distance: lowest free index wins
    z = torch.randn(5, 7, 3)
    assert greedy_assign(z, codebook).tolist() == [list(range(7))] * 5
    # C = V with distinct words: every entity uses the whole vocabulary once
    codebook, z = torch.randn(6, 4), torch.randn(9, 6, 4)
    out = greedy_assign(z, codebook)
    assert all(sorted(row) == list(range(6)) for row in out.tolist())
    assert torch.equal(out, greedy_assign_masked(z, codebook))


def test_fast_greedy_ties_beyond_the_candidates_go_to_the_lowest_index():
    # concept 1 prefers word 0 (taken by concept 0); words 1..5 tie behind it, so the pick
    # is word 1 whatever topk keeps among the tied words
    codebook = torch.tensor([[0.0], [1.0], [-1.0], [1.0], [-1.0], [1.0]])
    z = torch.tensor([[[0.0], [0.0]]]).repeat(4, 1, 1)
    assert greedy_assign(z, codebook).tolist() == [[0, 1]] * 4
    assert torch.equal(greedy_assign(z, codebook), greedy_assign_masked(z, codebook))


def test_nearest_candidates_are_the_stable_sorted_prefix_when_no_tie_is_cut():
    dist = torch.tensor([[3.0, 1.0, 2.0, 1.0, 5.0], [0.0, 4.0, 4.0, 1.0, 9.0]])
    vals, idx = nearest_candidates(dist, 3)
    assert idx.tolist() == [[1, 3, 2], [0, 3, 1]]
    assert vals.tolist() == [[1.0, 1.0, 2.0], [0.0, 1.0, 4.0]]


# ---------------------------------------------------------------------------- concept layer
def test_concept_layer_equals_pytorch_layer_with_the_same_dropout_masks():
    torch.manual_seed(0)
    layer, _ = concept_layers(16, 32, dropout=0.2)
    ref = nn.TransformerEncoderLayer(16, 1, 32, 0.2, batch_first=True)
    ref.load_state_dict(layer.state_dict())
    x = torch.randn(6, 5, 16, requires_grad=True)
    for train in (False, True):
        layer.train(train), ref.train(train)
        outs = []
        for module in (layer, ref):
            torch.manual_seed(7)  # same masks when the draws happen in the same order
            y = module(x)
            outs.append((y, torch.autograd.grad(y.square().sum(), [x, *module.parameters()])))
        (y, g), (y_ref, g_ref) = outs
        assert torch.allclose(y, y_ref, atol=1e-6)
        for a, b in zip(g, g_ref):
            assert float((a - b).norm()) <= 1e-5 * float(b.norm()) + 1e-7


# ---------------------------------------------------------------------------- FACE steps
def old_path(face: FACE) -> FACE:
    """The same FACE with the PyTorch layers (the masking greedy is patched by the caller)."""
    old = copy.deepcopy(face)
    for name in ("concept_encoder", "concept_decoder"):
        layer = getattr(face, name)
        ref = nn.TransformerEncoderLayer(
            layer.linear1.in_features, 1, layer.linear1.out_features, layer.dropout.p,
            batch_first=True,
        )
        ref.load_state_dict(layer.state_dict())
        setattr(old, name, ref)
    object.__setattr__(old, "text_encoder", face.text_encoder)
    return old


def step_grads(face: FACE, seed: int) -> tuple[dict[str, float], dict[str, Tensor]]:
    out, ids, emb = batch(b=4, grad=True)
    torch.manual_seed(seed)
    losses = face.losses(out, *ids)
    sum(losses.values()).backward()
    grads = {n: p.grad.clone() for n, p in face.named_parameters() if p.grad is not None}
    grads["batch embeddings"] = emb.grad.clone()
    return {k: float(v.detach()) for k, v in losses.items()}, grads


@pytest.mark.parametrize("stage", ["map", "align"])
@pytest.mark.parametrize("train", [False, True])
def test_fp32_fast_path_gives_the_old_losses_and_gradients(stage, train, monkeypatch):
    face, _ = make_face(stage, word_num=6, vocab_size=12, **FLOAT32)
    old = old_path(face)
    face.train(train), old.train(train)
    new_losses, new_grads = step_grads(face, seed=11)
    monkeypatch.setattr(quantizer_module, "greedy_assign", greedy_assign_masked)
    old_losses, old_grads = step_grads(old, seed=11)
    assert new_losses.keys() == old_losses.keys()
    for k, v in old_losses.items():
        assert abs(new_losses[k] - v) <= 1e-5 * abs(v), k
    assert new_grads.keys() == old_grads.keys()
    for k, g in old_grads.items():
        assert float((new_grads[k] - g).norm()) <= 1e-5 * float(g.norm()) + 1e-9, k


# ---------------------------------------------------------------------------- switches
def test_bernoulli_mask_rate_and_seeding():
    torch.manual_seed(0)
    m = bernoulli_mask((200, 1000), 0.9)
    assert m.dtype == torch.bool and m.shape == (200, 1000)
    assert abs(float(m.float().mean()) - 0.9) < 0.003  # 5 sd of 2e5 draws is 0.0034
    torch.manual_seed(0)
    assert torch.equal(m, bernoulli_mask((200, 1000), 0.9))  # torch's seed decides
    assert not torch.equal(m, bernoulli_mask((200, 1000), 0.9))  # fresh draws each call
    assert bool(bernoulli_mask((7,), 1.0).all()) and not bool(bernoulli_mask((7,), 0.0).any())
    with pytest.raises(ValueError, match="keep probability"):
        bernoulli_mask((3,), 1.5)


def test_fast_dropout_scales_kept_entries_and_masks_the_gradient():
    x = torch.randn(50, 40, requires_grad=True)
    y = fast_dropout(x, 0.25)
    kept = y != 0
    assert torch.allclose(y[kept], x[kept] / 0.75)
    (g,) = torch.autograd.grad(y.sum(), x)
    assert torch.allclose(g, kept.float() / 0.75)
    assert fast_dropout(x, 0.25, training=False) is x and fast_dropout(x, 0.0) is x
    layer = FastDropout(0.25).eval()
    assert layer(x) is x
    with pytest.raises(ValueError, match="dropout probability"):
        fast_dropout(x, 1.0)


def test_fast_dropout_switch_changes_only_the_masks():
    slow, _ = make_face("map", word_num=4, **FLOAT32)
    fast, _ = make_face("map", word_num=4, bf16=False, fast_dropout=True)
    assert isinstance(fast.concept_encoder.dropout, FastDropout)
    assert not isinstance(slow.concept_encoder.dropout, FastDropout)
    fast.load_state_dict(slow.state_dict(), strict=True)  # same parameters and keys
    slow.eval(), fast.eval()  # dropout off: identical
    x = torch.randn(5, EMB_DIM)
    assert torch.allclose(slow(x).x_hat, fast(x).x_hat, atol=1e-6)


def relative(a: Tensor, b: Tensor) -> float:
    return float((a - b).norm() / b.norm())


def test_bf16_switch_stays_close_to_fp32():
    """bf16 autocast of the concept layers and the text encoder, eval mode, one align step:
    losses within 1% of float32, all gradients together within 5% (relative norm; about
    1% here) and each parameter's within 20% (about 9% at most here)."""
    fp32, enc = make_face("align", word_num=4, **FLOAT32)
    config = FACEConfig(word_num=4, stage="align", bf16=True, fast_dropout=False, **SMALL)
    bf16 = FACE(config, EMB_DIM, fp32.quantizer.codebook_tokens, encoder=enc,
                user_profiles=fp32.user_profiles, item_profiles=fp32.item_profiles)
    bf16.load_state_dict(fp32.state_dict(), strict=True)
    fp32.eval(), bf16.eval()
    (l32, g32), (l16, g16) = step_grads(fp32, 0), step_grads(bf16, 0)
    for k in l32:
        assert abs(l16[k] - l32[k]) <= 0.01 * abs(l32[k]), (k, l16[k], l32[k])
    flat = [torch.cat([g[k].flatten() for k in g32]) for g in (g16, g32)]
    assert relative(*flat) <= 0.05
    for k in g32:
        assert relative(g16[k], g32[k]) <= 0.2, (k, relative(g16[k], g32[k]))
    out, _, _ = batch(b=4)
    x = torch.cat([out.user_emb, out.pos_emb, out.neg_emb])
    assert bf16(x).z_e.dtype == torch.float32  # the quantizer sees float32


def test_keep_freed_memory_sets_glibc_malloc_and_is_idempotent():
    first = keep_freed_memory()
    assert first == (platform.system() == "Linux" and platform.libc_ver()[0] == "glibc")
    assert keep_freed_memory() == first
    big = torch.ones(2**23)  # 32 MiB, above glibc's mmap threshold: now from the heap
    assert float(F.relu(big).sum()) == 2**23  # allocation still works
