"""Contrastive alignment of descriptor prompts with profile embeddings (paper section 3f).

For the N prompt rows of a step (N = 3B, or ``align_entities`` sampled rows)::

    c_n     = Enc_text(prompt_n)              frozen encoder, mean pool + L2   C_batch [N, d_s]
    s_n     = profile embedding of entity n   precomputed, L2-normalised       S_batch [N, d_s]
    L_align = CE((C_batch S_batch^T) / tau, labels 0..N-1)                      tau = 0.02

One direction (collaborative -> text), in-batch negatives (duplicates of an entity inside
a batch act as false negatives, as in the reference; quirk 9.10).

The encoder is frozen: its weights get no gradient and are never in FACE's parameters or
state dict, but the gradient flows through it to the prompt embeddings and on to the
projection. It runs in eval mode by default; the reference ran it in train mode, i.e. with
BERT's dropout 0.1 on the collaborative side only (``encoder_dropout``, quirk 9.5).

Cost bound (``align_entities``): the encoder's forward and backward over all 3B sequences
dominates a step (design notes: 34 s per step for 768 x 46 tokens on 2 CPU cores). With
``align_entities = K < 3B`` the step aligns K rows drawn uniformly without replacement
from the 3B (torch's global RNG), so the encoder sees K sequences; the contrastive task
then has K - 1 in-batch negatives instead of 3B - 1 (an easier task: its loss floor is
lower, log K instead of log 3B at chance), and each entity is aligned in expectation K/3B
of the times it appears. The CPU profile states K in its report.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, Protocol

import torch
import torch.nn.functional as F
from torch import Tensor, nn


class TextEncoder(Protocol):
    """What FACE needs of the frozen encoder (facelib.text.encoder.FrozenEncoder)."""

    tokenizer: Any
    cls_id: int
    sep_id: int
    dim: int  # d_s
    model: nn.Module

    @property
    def token_embeddings(self) -> Tensor: ...  # [V_tok, d_t]

    def encode_embeddings(self, inputs_embeds: Tensor, attention_mask: Tensor | None) -> Tensor:
        """inputs_embeds [N, L, d_t], mask [N, L] -> L2-normalised mean pool [N, d_s]."""
        ...


def info_nce(queries: Tensor, keys: Tensor, tau: float) -> Tensor:
    """``CE((queries keys^T) / tau, labels 0..N-1)``: queries, keys [N, d_s] -> scalar."""
    logits = queries @ keys.t() / tau
    return F.cross_entropy(logits, torch.arange(len(queries), device=queries.device))


def sample_rows(n: int, limit: int | None, device: Any = None) -> Tensor | None:
    """At most ``limit`` of ``n`` row indices, uniform without replacement; None = all rows."""
    if limit is None or limit >= n:
        return None
    return torch.randperm(n, device=device)[:limit]


@contextmanager
def encoder_mode(encoder: TextEncoder, dropout: bool) -> Iterator[None]:
    """Run the encoder in train mode (dropout on) or eval mode; restore its mode after."""
    was_training = encoder.model.training
    encoder.model.train(dropout)
    try:
        yield
    finally:
        encoder.model.train(was_training)


@contextmanager
def attention_implementation(encoder: TextEncoder, name: str | None) -> Iterator[None]:
    """Run a Hugging Face encoder with attention implementation ``name`` ("eager", "sdpa");
    restore the previous one after. None, or a model without ``set_attn_implementation``:
    unchanged. The autograd graph keeps the ops of the forward, so a backward after the
    block is unaffected."""
    model = encoder.model
    setter = getattr(model, "set_attn_implementation", None)
    before = getattr(getattr(model, "config", None), "_attn_implementation", None)
    if name is None or setter is None or before is None or before == name:
        yield
        return
    setter(name)
    try:
        yield
    finally:
        setter(before)


def encode_prompts(
    encoder: TextEncoder,
    inputs_embeds: Tensor,
    attention_mask: Tensor,
    dropout: bool = False,
    bf16: bool = False,
) -> Tensor:
    """Frozen-encoder embeddings of prompt sequences [N, L, d_t] -> [N, d_s], with gradient.

    With equal prompt lengths the mask is all ones, the reference's computation.

    ``bf16``: the encoder runs under ``torch.autocast(dtype=torch.bfloat16)`` (matmuls and
    attention in bf16; residual sums, LayerNorms and the pooled output in float32), forward
    and backward; the result is float32. On the CPU its attention then runs as Hugging
    Face's "eager" matmul + softmax instead of ``scaled_dot_product_attention``, whose CPU
    flash kernel is about 2x slower in bf16 at these lengths (L = 46, head size 32); the
    maths is the same. float32 keeps the encoder's own implementation (sdpa).
    """
    device = inputs_embeds.device.type
    eager = "eager" if bf16 and device == "cpu" else None
    with encoder_mode(encoder, dropout), attention_implementation(encoder, eager), \
            torch.autocast(device, dtype=torch.bfloat16, enabled=bf16):
        out = encoder.encode_embeddings(inputs_embeds, attention_mask)
    return out.float()
