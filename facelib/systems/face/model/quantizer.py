"""Token quantizer: concept vectors snap to distinct words of a frozen LLM-token codebook.

Paper section 3c. Shapes: N entities, C concepts, D concept size, V vocabulary size,
d_t token-embedding size::

    E_hat   = E_vocab A^T + a                     E_vocab [V, d_t] frozen, A [D, d_t], a [D]
    dist    = ||z||^2 + ||e||^2 - 2 z.e           for each z_e[n, c] and codebook row e
    k[n, c] = greedy distinct argmin              (see :func:`greedy_assign`)
    z_q     = E_hat[k]                            [N, C, D]
    z_q_st  = z_e + sg(z_q - z_e)                 straight-through estimator
    L_cb     = mean((z_q - sg(z_e))^2)            trains the codebook mapping (A, a) only
    L_commit = mean((z_e - sg(z_q))^2)            trains the encoder side only
    L_vq     = w_cb L_cb + w_commit L_commit

VQ weights: the corrected default is VQ-VAE's (w_cb, w_commit) = (1.0, 0.25) (van den Oord
et al. 2017: codebook term weight 1, commitment beta = 0.25); the reference implementation
uses (0.75, 0.25) (``reference_vq_weights``, quirk 9.7). There is no EMA, no dead-code
handling and no residual quantization, as in the reference (quirk 9.8).
"""

from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

VQ_WEIGHTS = (1.0, 0.25)
REFERENCE_VQ_WEIGHTS = (0.75, 0.25)


class Quantized(NamedTuple):
    """Output of :meth:`TokenQuantizer.forward`."""

    z_q_st: Tensor  # [N, C, D] straight-through: value z_q, gradient to z_e
    z_q: Tensor  # [N, C, D] the chosen codebook rows (gradient to the mapping)
    indices: Tensor  # [N, C] long, distinct per row, in [0, V)
    loss_cb: Tensor  # scalar
    loss_commit: Tensor  # scalar


def squared_distances(
    z: Tensor, codebook: Tensor, codebook_sq: Tensor | None = None, out: Tensor | None = None
) -> Tensor:
    """``||z||^2 + ||e||^2 - 2 z.e``: z [N, D], codebook [V, D] -> [N, V] (one buffer).

    ``codebook_sq`` [V] is ``||e||^2`` (computed here when None; pass it to reuse it across
    calls) and ``out`` [N, V] an optional buffer to write into; neither changes the result.
    """
    if codebook_sq is None:
        codebook_sq = codebook.pow(2).sum(1)
    dist = torch.addmm(codebook_sq.unsqueeze(0), z, codebook.t(), alpha=-2.0, out=out)
    return dist.add_(z.pow(2).sum(1, keepdim=True))


def nearest_candidates(dist: Tensor, k: int) -> tuple[Tensor, Tensor]:
    """The k smallest distances of each row and their words: dist [N, V] -> ([N, k], [N, k]).

    Returned in (distance, index) order: ``topk`` selects, a stable sort orders ties by
    index. Where a word left out ties with the k-th distance, ``topk`` may have kept a
    higher index instead; :func:`greedy_assign` checks the rows where that matters.
    """
    vals, idx = dist.topk(k, dim=1, largest=False, sorted=False)
    idx, perm = idx.sort(dim=1)
    vals, perm = vals.gather(1, perm).sort(dim=1, stable=True)
    return vals, idx.gather(1, perm)


@torch.no_grad()
def greedy_assign(z_e: Tensor, codebook: Tensor) -> Tensor:
    """Distinct nearest words per entity, concept 0 first: z_e [N, C, D] -> k [N, C].

    For c = 0..C-1: ``k[n, c] = argmin_v dist[n, c, v]`` over the words not yet taken by
    concepts 0..c-1 of the same entity n, exactly the reference's loop that sets
    ``dist[n, :, k_c] = +inf`` after each pick; ties go to the lowest index. Needs C <= V.

    Concept c finds at most c of its words taken, so its pick is the first word not taken
    among its c + 1 nearest words in (distance, index) order (:func:`nearest_candidates`):
    each concept's [N, V] distances are scanned once for those candidates and the greedy
    order is resolved on the small [N, c + 1] candidate arrays, instead of masking and
    rescanning [N, V] per concept. A pick whose distance equals the (c + 1)-th candidate's
    may hide a lower-index tie that ``topk`` left out; those rows (ties are rare with real
    data) are resolved from a stable sort of their whole row. The distances are computed
    per concept into one reused [N, V] buffer with the arithmetic of
    :func:`squared_distances`, so the indices equal those of the masking loop it replaces
    (compute a concept's distances, set taken words to +inf, argmin) exactly.
    """
    n, c_num, _ = z_e.shape
    out = torch.empty(n, c_num, dtype=torch.long, device=z_e.device)
    codebook_sq = codebook.pow(2).sum(1)  # [V]
    buf = torch.empty(n, codebook.shape[0], dtype=z_e.dtype, device=z_e.device)
    for c in range(c_num):
        dist = squared_distances(z_e[:, c], codebook, codebook_sq, out=buf)  # [N, V]
        if c == 0:
            out[:, 0] = dist.argmin(1)
            continue
        vals, cand = nearest_candidates(dist, c + 1)  # [N, c + 1] each
        taken = out[:, :c]
        free = (cand.unsqueeze(2) != taken.unsqueeze(1)).all(2)  # >= 1 True per row
        first = free.to(torch.uint8).argmax(1, keepdim=True)  # first free candidate
        out[:, c] = cand.gather(1, first).squeeze(1)
        unsure = (vals.gather(1, first) == vals[:, -1:]).squeeze(1)  # [N]
        if bool(unsure.any()):
            rows = unsure.nonzero().squeeze(1)
            order = dist[rows].sort(dim=1, stable=True).indices[:, : c + 1]  # exact first c + 1
            free = (order.unsqueeze(2) != taken[rows].unsqueeze(1)).all(2)
            first = free.to(torch.uint8).argmax(1, keepdim=True)
            out[rows, c] = order.gather(1, first).squeeze(1)
    return out


class TokenQuantizer(nn.Module):
    """Quantize C concept vectors per entity to C distinct words of a frozen vocabulary.

    Args:
        vocab_embeddings: E_vocab [V, d_t], the frozen input-token embeddings of the
            descriptor vocabulary; kept as a non-persistent buffer (it is a slice of the
            frozen encoder, rebuilt from the vocabulary, never saved in checkpoints).
        word_num: C; must not exceed V.
        word_dim: D.
        reference_vq_weights: (w_cb, w_commit) = (0.75, 0.25) as the reference; default
            (1.0, 0.25) as VQ-VAE.
    """

    codebook_tokens: Tensor

    def __init__(
        self,
        vocab_embeddings: Tensor,
        word_num: int,
        word_dim: int,
        reference_vq_weights: bool = False,
    ):
        super().__init__()
        if vocab_embeddings.ndim != 2:
            raise ValueError(
                f"vocab_embeddings must be [V, d_t], got shape {tuple(vocab_embeddings.shape)}: "
                "pass the token-embedding rows of the vocabulary"
            )
        vocab_size, token_dim = vocab_embeddings.shape
        if word_num > vocab_size:
            raise ValueError(
                f"word_num C={word_num} is larger than the vocabulary V={vocab_size}: "
                "lower word_num or use a larger vocabulary"
            )
        self.word_num = word_num
        self.cb_weight, self.commit_weight = (
            REFERENCE_VQ_WEIGHTS if reference_vq_weights else VQ_WEIGHTS
        )
        self.register_buffer(
            "codebook_tokens", vocab_embeddings.detach().float().clone(), persistent=False
        )
        self.mapping = nn.Linear(token_dim, word_dim)  # A [D, d_t], a [D]

    @property
    def vocab_size(self) -> int:
        return self.codebook_tokens.shape[0]

    def codebook(self) -> Tensor:
        """``E_hat = E_vocab A^T + a``: [V, D], differentiable in (A, a)."""
        return self.mapping(self.codebook_tokens)

    def vq_loss(self, q: Quantized) -> Tensor:
        """``L_vq = w_cb L_cb + w_commit L_commit`` (unweighted by vq_weight)."""
        return self.cb_weight * q.loss_cb + self.commit_weight * q.loss_commit

    def forward(self, z_e: Tensor) -> Quantized:
        """z_e [N, C, D] -> :class:`Quantized` (distinct words per entity)."""
        codebook = self.codebook()  # [V, D]
        indices = greedy_assign(z_e.detach(), codebook.detach())  # [N, C]
        z_q = codebook[indices]  # [N, C, D]
        return Quantized(
            z_q_st=z_e + (z_q - z_e).detach(),
            z_q=z_q,
            indices=indices,
            loss_cb=F.mse_loss(z_q, z_e.detach()),
            loss_commit=F.mse_loss(z_e, z_q.detach()),
        )

    def pinv_words(self, z_q_st: Tensor) -> Tensor:
        """The reference's reverse mapping ``w = (z_q_st - a) pinv(A)^T``, A and a detached.

        z_q_st [N, C, D] -> w [N, C, d_t]. Since D < d_t, ``pinv(A) A`` projects onto
        rowspace(A): w is the chosen word's token embedding projected onto rowspace(A), not
        the token embedding itself (quirk 9.4). Gradient reaches z_e via straight-through;
        none reaches the mapping.
        """
        weight, bias = self.mapping.weight.detach(), self.mapping.bias.detach()
        return (z_q_st - bias) @ torch.linalg.pinv(weight).t()
