"""Disentangled projection, concept transformers and the reconstruction head of FACE.

Shapes: N entities (N = 3B in training: users, positives, negatives), d the CF embedding
size, C concepts (``word_num``), D the concept size (``word_dim``).

Pipeline pieces defined here (paper sections 3a, 3b, 3d)::

    h_c   = x W_c + b_c                    x [N, d], W [C, d, D], b [C, D] -> h [N, C, D]
    z_e   = Enc(h)                         one post-LN transformer layer over the C tokens
    dec   = Enc_2(z_q_st)                  a second, independent layer
    x_hat = Linear(C*D -> d)(flatten(dec)) [N, d]
"""

from __future__ import annotations

import copy
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from facelib.systems.face.model.dropout import FastDropout


class ConceptProjection(nn.Module):
    """``h_c = x W_c + b_c`` for c = 1..C: C concept vectors per CF embedding.

    Args:
        emb_dim: d, the CF embedding size.
        word_num: C, the number of concepts (one descriptor word each).
        word_dim: D, the concept size.
        reference_init: the reference implementation's initialisation. ``True``:
            ``nn.init.orthogonal_`` on the 3-D tensor W [C, d, D], which flattens the trailing
            dims, so the C matrices are mutually orthonormal as d*D vectors but none is itself
            orthogonal (entries ~ 1/sqrt(d*D)), and ``b ~ N(0, 1)`` (norm ~ sqrt(D), which
            dominates ``x W`` at the start; quirk 9.6). ``False`` (default): each W_c is its
            own (semi-)orthogonal d x D matrix, so ``x W_c`` keeps the scale of x and the
            concepts start as different rotations of it, and ``b = 0``.
    """

    def __init__(self, emb_dim: int, word_num: int, word_dim: int, reference_init: bool = False):
        super().__init__()
        self.weight = nn.Parameter(torch.empty(word_num, emb_dim, word_dim))  # W [C, d, D]
        self.bias = nn.Parameter(torch.empty(word_num, word_dim))  # b [C, D]
        with torch.no_grad():
            if reference_init:
                nn.init.orthogonal_(self.weight)
                nn.init.normal_(self.bias)
            else:
                for w_c in self.weight:
                    nn.init.orthogonal_(w_c)
                nn.init.zeros_(self.bias)

    def forward(self, x: Tensor) -> Tensor:
        """x [N, d] -> h [N, C, D]."""
        return torch.einsum("nd,cdk->nck", x, self.weight) + self.bias


class ConceptLayer(nn.TransformerEncoderLayer):
    """``nn.TransformerEncoderLayer`` (post-LN, batch_first) over the C concept tokens, with a
    leaner self-attention block and an optional bf16 autocast.

    Same parameters and state-dict keys as the PyTorch layer (``self_attn.in_proj_weight``
    [3D, D], ``self_attn.in_proj_bias``, ``self_attn.out_proj``, ``linear1``, ``linear2``,
    ``norm1``, ``norm2``) and the same maths::

        [q, k, v] = x W_in^T + b_in                       x [N, C, D] -> 3 x [N, h, C, D/h]
        a = softmax(q k^T / sqrt(D/h)) v                  scaled_dot_product_attention,
                                                          attention dropout in training
        x = norm1(x + dropout1(a W_out^T + b_out))
        x = norm2(x + dropout2(linear2(dropout(relu(linear1(x))))))

    The self-attention block calls ``scaled_dot_product_attention`` on views of one packed
    projection instead of ``nn.MultiheadAttention``'s sequence-first path, which transposes
    the batch, splits q/k/v by ``select`` (whose backward zero-fills and adds three
    [3, C, N, D] buffers) and copies them back. Dropout masks have the same shapes, memory
    layouts and order, so a seeded step draws the same masks as the PyTorch layer.

    ``bf16``: run the layer under ``torch.autocast(dtype=torch.bfloat16)`` (matmuls in
    bf16, residual sums and LayerNorm outputs stay float32); the output is float32.
    ``fast_dropout``: the three hidden dropouts (``dropout1``, ``dropout``, ``dropout2``)
    are :class:`~facelib.systems.face.model.dropout.FastDropout` (same distribution, masks from a
    faster generator); the attention-weight dropout inside ``scaled_dot_product_attention``
    stays PyTorch's ([N, h, C, C], small).
    """

    def __init__(self, *args: Any, bf16: bool = False, fast_dropout: bool = False, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.bf16 = bf16
        if fast_dropout:
            self.dropout = FastDropout(self.dropout.p)
            self.dropout1 = FastDropout(self.dropout1.p)
            self.dropout2 = FastDropout(self.dropout2.p)

    def forward(self, src: Tensor, *args: Any, **kwargs: Any) -> Tensor:  # type: ignore[override]
        """src [N, C, D] -> [N, C, D] (float32)."""
        with torch.autocast(src.device.type, dtype=torch.bfloat16, enabled=self.bf16):
            out = super().forward(src, *args, **kwargs)
        return out.float()

    def _sa_block(
        self,
        x: Tensor,
        attn_mask: Tensor | None,
        key_padding_mask: Tensor | None,
        is_causal: bool = False,
    ) -> Tensor:
        if attn_mask is not None or key_padding_mask is not None or is_causal:
            return super()._sa_block(x, attn_mask, key_padding_mask, is_causal)
        attn = self.self_attn
        n, length, dim = x.shape
        heads = attn.num_heads
        qkv = F.linear(x, attn.in_proj_weight, attn.in_proj_bias)  # [N, C, 3D]
        q, k, v = qkv.view(n, length, 3, heads, dim // heads).permute(2, 0, 3, 1, 4)
        out = F.scaled_dot_product_attention(  # [N, h, C, D/h]
            q, k, v, dropout_p=attn.dropout if self.training else 0.0
        )
        # sequence-first rows, as nn.MultiheadAttention lays them out: dropout1 then draws
        # its mask over the same memory order as the PyTorch layer
        out = out.permute(2, 0, 1, 3).reshape(length * n, dim)  # [C*N, D]
        out = F.linear(out, attn.out_proj.weight, attn.out_proj.bias)
        return self.dropout1(out.view(length, n, dim).transpose(0, 1))  # [N, C, D]


def concept_layers(
    word_dim: int,
    ffn_dim: int = 2048,
    dropout: float = 0.1,
    same_init: bool = True,
    bf16: bool = False,
    fast_dropout: bool = False,
) -> tuple[ConceptLayer, ConceptLayer]:
    """The encoder and decoder layers over the C concept tokens: ``(Enc, Enc_2)``.

    Each is one :class:`ConceptLayer` (an ``nn.TransformerEncoderLayer``) with d_model D,
    1 head, FFN ``ffn_dim`` (2048), ``dropout`` (0.1), ReLU, post-LN, batch_first, no
    positional encoding (the C tokens are an unordered set to the layer; concept identity
    comes from W_c, b_c). With ``same_init`` (the reference, quirk 9.1) the decoder is a
    deep copy of the encoder: independent parameters with identical initial weights;
    otherwise it is freshly drawn. ``bf16`` and ``fast_dropout``: see :class:`ConceptLayer`.
    """

    def make() -> ConceptLayer:
        return ConceptLayer(
            d_model=word_dim,
            nhead=1,
            dim_feedforward=ffn_dim,
            dropout=dropout,
            activation="relu",
            batch_first=True,
            norm_first=False,
            bf16=bf16,
            fast_dropout=fast_dropout,
        )

    encoder = make()
    decoder = copy.deepcopy(encoder) if same_init else make()
    return encoder, decoder


class ReconstructionHead(nn.Module):
    """``x_hat = Linear(C*D -> d)(flatten(dec))``: dec [N, C, D] -> x_hat [N, d]."""

    def __init__(self, emb_dim: int, word_num: int, word_dim: int):
        super().__init__()
        self.linear = nn.Linear(word_num * word_dim, emb_dim)

    def forward(self, dec: Tensor) -> Tensor:
        return self.linear(dec.flatten(1))
