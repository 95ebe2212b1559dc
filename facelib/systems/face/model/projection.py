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

import torch
from torch import Tensor, nn


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


def concept_layers(
    word_dim: int, ffn_dim: int = 2048, dropout: float = 0.1, same_init: bool = True
) -> tuple[nn.TransformerEncoderLayer, nn.TransformerEncoderLayer]:
    """The encoder and decoder layers over the C concept tokens: ``(Enc, Enc_2)``.

    Each is one ``nn.TransformerEncoderLayer`` with d_model D, 1 head, FFN ``ffn_dim``
    (2048), ``dropout`` (0.1), ReLU, post-LN, batch_first, no positional encoding (the C
    tokens are an unordered set to the layer; concept identity comes from W_c, b_c). With
    ``same_init`` (the reference, quirk 9.1) the decoder is a deep copy of the encoder:
    independent parameters with identical initial weights; otherwise it is freshly drawn.
    """

    def make() -> nn.TransformerEncoderLayer:
        return nn.TransformerEncoderLayer(
            d_model=word_dim,
            nhead=1,
            dim_feedforward=ffn_dim,
            dropout=dropout,
            activation="relu",
            batch_first=True,
            norm_first=False,
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
