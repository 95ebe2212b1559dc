"""Semantic Convergence (reconstructed): "Alignment Tokenization" of behavioural item
embeddings into codes that live in a language model's token-embedding space.

Semantic Convergence (Li et al., AAAI-25, arXiv 2412.13771) turns the item embeddings of a
traditional recommender into short sequences of tokens via cascaded codebooks in the LLM's
token space. **The paper has no public code and its model, losses and hyperparameters were
not obtained: everything below is a reconstruction** (``related-systems.md`` §4), built on
LC-Rec's residual quantiser (:mod:`facelib.generative.rqvae`), and every output of this
module is labelled ``"Semantic Convergence (reconstructed)"``.

Shapes: I items, d_cf CF-embedding size, V words, D token-embedding size, L levels, K codes
per level. Inputs: item_emb [I, d_cf] (e.g. LightGCN's item table), token_emb [V, D] (the
frozen encoder's input token embeddings of a word list) and the V words::

    t       = W x + w                           learned linear map d_cf -> D      [N, D]
    r_1     = t,   c_i = argmin_k ||r_i - v^i_k||^2,   r_{i+1} = r_i - v^i_{c_i}
    t_hat   = sum_i v^i_{c_i}                   straight-through: t + sg[t_hat - t]
    x_hat   = U t_hat + u                       learned linear decoder D -> d_cf
    L       = ||x - x_hat||^2 + L_quant + align_weight * L_align
    L_quant = mean_i (||sg[r_i] - v_{c_i}||^2 + beta ||r_i - sg[v_{c_i}]||^2)
    L_align = mean_i mean_k ||v^i_k - e_{n(i, k)}||^2,   n(i, k) = argmin_j ||v^i_k - e_j||^2

(squared norms are element means, as in :mod:`~facelib.generative.rqvae`). Initialisation:
W is rescaled so the mapped items have the token table's mean and spread; each level's
codebook is set, level by level, to the K distinct token embeddings nearest to the K-means
centres of the mapped residuals (:func:`snap_to_tokens`). Two modes:

- ``"tied"``: the codebooks then learn (quantisation loss), and ``L_align`` pulls each code
  back to its nearest token embedding so that it stays readable as a word.
- ``"frozen"`` (FACE-like): the codebooks stay those token embeddings; only the linear maps
  learn, and ``L_align`` is 0.

Each code reads as the word of its nearest token embedding. Indices are made distinct by
LC-Rec's collision rounds (:func:`facelib.generative.rqvae.assign_indices`) and, by default
here, the deterministic last resort ``resolve="nearest_unused"`` (recorded in the result),
so that an :class:`~facelib.generative.beam.IndexTrie` can be built.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from facelib.generative.fit import FitLog
from facelib.generative.rqvae import (
    EVAL_KEYS,
    ItemIndices,
    ResidualQuantizer,
    RQVAEConfig,
    as_embeddings,
    assign_indices,
    check_shared_fields,
    first_batch,
    fit_quantizer,
    level_epsilons,
    squared_distances,
)
from facelib.seed import seed_everything

LABEL = "Semantic Convergence (reconstructed)"
MODES = ("tied", "frozen")
SEMANTIC_EVAL_KEYS = (*EVAL_KEYS, "align_loss")
_D = RQVAEConfig  # the defaults this config shares with LC-Rec's RQ-VAE


@dataclass(frozen=True)
class SemanticTokenizerConfig:
    """Settings of the Semantic Convergence (reconstructed) tokenizer.

    Fields named as in :class:`~facelib.generative.rqvae.RQVAEConfig` mean the same and take
    its defaults. Own fields:

    Attributes:
        mode: ``"tied"`` (codebooks learn, aligned to tokens) or ``"frozen"`` (codebooks are
            fixed token embeddings; FACE-like).
        align_weight: weight of ``L_align`` (tied mode; reconstructed, not the paper's).
        select: validation key kept by early stopping (default: lowest reconstruction).
        resolve: last resort for collisions left after the Sinkhorn rounds; default
            ``"nearest_unused"`` so the codes are always distinct (``"none"`` reports them).
    """

    levels: int = _D.levels
    codebook_size: int = _D.codebook_size
    mode: str = "tied"
    align_weight: float = 1.0
    beta: float = _D.beta
    kmeans_iters: int = _D.kmeans_iters
    sk_epsilon: float = _D.sk_epsilon
    sk_iters: int = _D.sk_iters
    lr: float = _D.lr
    weight_decay: float = _D.weight_decay
    warmup_epochs: int = _D.warmup_epochs
    grad_clip: float = _D.grad_clip
    batch_size: int = _D.batch_size
    max_epochs: int = _D.max_epochs
    eval_every: int = _D.eval_every
    patience: int = _D.patience
    rel_delta: float = _D.rel_delta
    select: str = "-recon_loss"
    max_collision_rounds: int = _D.max_collision_rounds
    resolve: str = "nearest_unused"

    def __post_init__(self) -> None:
        name = type(self).__name__
        if self.mode not in MODES:
            raise ValueError(f"{name}.mode must be one of {MODES}, got {self.mode!r}")
        if self.align_weight < 0:
            raise ValueError(f"{name}.align_weight must be >= 0, got {self.align_weight}; "
                             f"e.g. 1.0")
        check_shared_fields(self, SEMANTIC_EVAL_KEYS)


# ----------------------------------------------------------------------------- model
def nearest_token_ids(vectors: Tensor, token_emb: Tensor) -> Tensor:
    """Index of each vector's nearest token embedding: [K, D], [V, D] -> [K] long."""
    return squared_distances(vectors.detach(), token_emb).argmin(1)


def snap_to_tokens(centres: Tensor, token_emb: Tensor) -> Tensor:
    """K distinct tokens nearest to K centres: [K, D], [V, D] (V >= K) -> ids [K] long.

    Centres pick in order of their nearest-token distance (closest first, ties by index),
    each the nearest token not yet taken. Deterministic."""
    d = squared_distances(centres.detach(), token_emb)  # [K, V]
    ids = torch.empty(len(centres), dtype=torch.long)
    taken = torch.zeros(len(token_emb), dtype=torch.bool)
    for k in torch.sort(d.min(1).values, stable=True).indices.tolist():
        row = d[k].masked_fill(taken, float("inf"))
        ids[k] = row.argmin()
        taken[ids[k]] = True
    return ids


class SemanticTokenizer(nn.Module):
    """Linear map into token space -> :class:`ResidualQuantizer` over D -> linear decoder.

    Args:
        cf_dim: d_cf.
        token_emb: [V, D] frozen token embeddings (a non-persistent buffer: pass the same
            table when rebuilding the model from a state dict).
        config: the tokenizer settings.
    """

    token_emb: Tensor
    init_token_ids: Tensor

    def __init__(self, cf_dim: int, token_emb: Tensor, config: SemanticTokenizerConfig
                 ) -> None:
        super().__init__()
        token_emb = torch.as_tensor(token_emb, dtype=torch.float32)
        dim = token_emb.shape[1]
        self.mode, self.align_weight = config.mode, config.align_weight
        self.register_buffer("token_emb", token_emb.detach().clone(), persistent=False)
        self.register_buffer("init_token_ids",
                             torch.zeros(config.levels, config.codebook_size, dtype=torch.long))
        self.to_tokens = nn.Linear(cf_dim, dim)
        self.from_tokens = nn.Linear(dim, cf_dim)
        self.quantizer = ResidualQuantizer(config.levels, config.codebook_size, dim,
                                           config.beta,
                                           level_epsilons(config.levels, config.sk_epsilon),
                                           config.sk_iters)
        if self.mode == "frozen":
            self.quantizer.codebooks.requires_grad_(False)

    def encode(self, x: Tensor) -> Tensor:
        """``t = W x + w``: [N, d_cf] -> [N, D]."""
        return self.to_tokens(x)

    def forward(self, x: Tensor, use_sk: bool = False) -> tuple[Tensor, Tensor, Tensor]:
        """x [N, d_cf] -> (x_hat [N, d_cf], codes [N, L], quant_loss)."""
        t_q, codes, quant_loss = self.quantizer(self.encode(x), use_sk)
        return self.from_tokens(t_q), codes, quant_loss

    def align_loss(self) -> Tensor:
        """``L_align``: mean squared distance of every code to its nearest token embedding
        (0 in frozen mode, where the codes are token embeddings)."""
        if self.mode == "frozen":
            return torch.zeros((), device=self.token_emb.device)
        losses = [F.mse_loss(book, self.token_emb[nearest_token_ids(book, self.token_emb)])
                  for book in self.quantizer.codebooks]
        return torch.stack(losses).mean()

    def losses(self, x: Tensor, use_sk: bool = False) -> dict[str, Tensor]:
        """``loss = mse(x, x_hat) + quant_loss + align_weight * align_loss``, its parts
        (scalars) and the codes [N, L]."""
        x_hat, codes, quant = self(x, use_sk)
        recon, align = F.mse_loss(x_hat, x), self.align_loss()
        return {"loss": recon + quant + self.align_weight * align, "recon_loss": recon,
                "quant_loss": quant, "align_loss": align, "codes": codes}

    @torch.no_grad()
    def init_from_items(self, x: Tensor, kmeans_iters: int, random_state: int) -> None:
        """Initialise from items x [N, d_cf] (N >= K): rescale W so ``W x + w`` has the
        token table's mean and root-mean-square spread, then set each level's codebook to
        the distinct tokens nearest to the K-means centres of the mapped residuals."""
        self.to_tokens.bias.zero_()
        t = self.to_tokens(x)
        spread = (t - t.mean(0)).pow(2).sum(1).mean().sqrt()
        target = (self.token_emb - self.token_emb.mean(0)).pow(2).sum(1).mean().sqrt()
        scale = target / spread.clamp_min(1e-12)
        self.to_tokens.weight.mul_(scale)
        self.to_tokens.bias.copy_(self.token_emb.mean(0) - scale * t.mean(0))

        def snap(level: int, centres: Tensor) -> Tensor:
            ids = snap_to_tokens(centres, self.token_emb)
            self.init_token_ids[level] = ids
            return self.token_emb[ids]

        self.quantizer.kmeans_init(self.encode(x), kmeans_iters, random_state, snap=snap)

    @torch.no_grad()
    def code_token_ids(self) -> Tensor:
        """Each code's nearest token: [L, K] long."""
        return torch.stack([nearest_token_ids(book, self.token_emb)
                            for book in self.quantizer.codebooks])

    @torch.no_grad()
    def reconstruct(self, codes: Tensor) -> Tensor:
        """``x_hat = U (sum_i v^i_{c_i}) + u``: codes [N, L] -> [N, d_cf]."""
        return self.from_tokens(self.quantizer.decode_codes(codes))


# ----------------------------------------------------------------------------- result
@dataclass
class SemanticTokens:
    """Semantic Convergence (reconstructed) item tokens.

    Attributes:
        codes: [I, L] int64 item indices (distinct unless ``resolve="none"`` left
            collisions, see ``indices``).
        words: ``words[level][code]``, the word of the code's nearest token embedding.
        token_ids: [L, K] the token-table row of each code's word.
        indices: the collision statistics (:class:`~facelib.generative.rqvae.ItemIndices`).
        recon_error: mean squared error of item_emb reconstructed from ``codes``.
        mode: ``"tied"`` or ``"frozen"``.
    """

    codes: np.ndarray
    words: list[list[str]]
    token_ids: np.ndarray
    indices: ItemIndices
    recon_error: float
    mode: str
    label: str = LABEL

    def item_words(self, item: int) -> list[str]:
        """The words of item ``item``'s codes, level by level."""
        return [self.words[level][int(c)] for level, c in enumerate(self.codes[item])]

    def summary(self) -> dict[str, Any]:
        """JSON-ready description, labelled ``"Semantic Convergence (reconstructed)"``."""
        used = {self.words[level][int(c)] for level in range(self.codes.shape[1])
                for c in np.unique(self.codes[:, level])}
        return {"system": self.label, "mode": self.mode,
                "recon_error": round(self.recon_error, 6), "distinct_words_used": len(used),
                **self.indices.summary()}


def check_tokens(token_emb: Tensor | np.ndarray, words: Sequence[str], codebook_size: int
                 ) -> Tensor:
    """token_emb as a finite float32 [V, D] tensor with V == len(words) >= codebook_size."""
    table = torch.as_tensor(token_emb, dtype=torch.float32)
    if table.ndim != 2:
        raise ValueError(f"token_emb must be [V, D], got shape {tuple(table.shape)}")
    if len(words) != len(table):
        raise ValueError(f"{len(words)} words for {len(table)} token embeddings; pass one "
                         f"word per token_emb row")
    if len(table) < codebook_size:
        raise ValueError(f"{len(table)} tokens for codebook_size = {codebook_size}: each "
                         f"level needs distinct tokens; lower codebook_size or add words")
    if not bool(torch.isfinite(table).all()):
        raise ValueError("token_emb holds NaN or inf values; check the token table")
    return table


@torch.no_grad()
def tokenize(model: SemanticTokenizer, item_emb: Tensor | np.ndarray, words: Sequence[str],
             config: SemanticTokenizerConfig) -> SemanticTokens:
    """Items' codes (argmin, collision rounds, ``config.resolve``) and their words:
    item_emb [I, d_cf] -> :class:`SemanticTokens`."""
    x = torch.as_tensor(item_emb, dtype=torch.float32)
    indices = assign_indices(model, x, config)
    ids = model.code_token_ids()
    model.eval()
    recon = model.reconstruct(torch.as_tensor(indices.codes))
    return SemanticTokens(codes=indices.codes,
                          words=[[words[i] for i in row] for row in ids.tolist()],
                          token_ids=ids.cpu().numpy(), indices=indices,
                          recon_error=float(F.mse_loss(recon, x)), mode=config.mode)


def train_semantic_tokenizer(item_emb: Tensor | np.ndarray, token_emb: Tensor | np.ndarray,
                             words: Sequence[str], config: SemanticTokenizerConfig, seed: int,
                             *, checkpoint_path: Path | None = None, resume: bool = False,
                             progress: bool = False
                             ) -> tuple[SemanticTokenizer, SemanticTokens, FitLog]:
    """Train the Semantic Convergence (reconstructed) tokenizer on item_emb [I, d_cf]
    (float32) against token_emb [V, D] and its V words; returns the model (best state by
    ``config.select`` loaded), its :class:`SemanticTokens` and the :class:`FitLog`.

    Seeds everything with ``seed``; initialises from one random batch
    (:meth:`SemanticTokenizer.init_from_items`); AdamW with warm-up and linear decay over
    the trainable parameters (the linear maps, and the codebooks in tied mode); training
    steps use Sinkhorn on the last level, evaluation argmin codes.
    """
    x = as_embeddings(item_emb, "item_emb", config.codebook_size)
    table = check_tokens(token_emb, words, config.codebook_size)
    rng = seed_everything(seed)
    model = SemanticTokenizer(x.shape[1], table, config)
    model.init_from_items(first_batch(x, config.batch_size, rng), config.kmeans_iters,
                          int(rng.integers(2**31 - 1)))
    log = fit_quantizer(model, x, config, rng,
                        {"semantic_tokenizer": asdict(config), "seed": seed,
                         "shape": list(x.shape), "tokens": list(table.shape)},
                        checkpoint_path=checkpoint_path, resume=resume, progress=progress,
                        desc=LABEL)
    return model, tokenize(model, x, words, config), log
