"""FACE as a regulariser on a CF backbone: map stage (VQ + reconstruction), align stage.

For a batch of B (user, pos, neg) triples the backbone's final embeddings are stacked
block-wise, ``X = [E_u[users]; E_i[pos]; E_i[neg]]`` [3B, d], and::

    h      = proj(X)                                   [3B, C, D]   projection.py
    z_e    = Enc(h)                                    [3B, C, D]
    z_q_st, k, L_cb, L_commit = quantize(z_e)          k [3B, C]    quantizer.py
    x_hat  = head(Enc_2(z_q_st))                       [3B, d]
    L_vq   = w_cb L_cb + w_commit L_commit
    L_rec  = mean((x_hat - sg(X))^2)
    L_align = InfoNCE(Enc_text(prompt(w(k))), S, tau)  align stage   prompt.py, alignment.py

    map:   L = L_base + vq_weight L_vq + recons_weight L_rec
    align: L = L_base + vq_weight L_vq + recons_weight L_rec + align_weight L_align

:meth:`FACE.losses` returns the three weighted terms; the trainer adds them to the
backbone's BPR loss and gives FACE's parameters their own Adam group (lr, no weight decay).
Scoring stays the backbone's dot product; the decoded x_hat is not used for scoring.

Checkpoints: the frozen text encoder is held by FACE but not registered, so it is in
neither ``parameters()`` nor ``state_dict()`` (the reference saved it in every checkpoint,
quirk 9.11), and ``FACE.to(device)`` does not move it (its owner does). The vocabulary
codebook, prompt tables and profile embeddings are non-persistent buffers, rebuilt from
the text stage's artefacts. A map checkpoint loads strictly into an align-stage FACE.

Control run ("same schedule, FACE losses off"): train with no regulariser at all (the
same map/align schedule of the backbone at lr/10 with early stopping); FACE contributes
nothing then, so there is no FACE switch for it.

Alignment rows (``align_batch``): ``triples`` aligns the 3B rows of the BPR batch, as the
reference; ``entities`` aligns a batch of distinct users and items per step, one pass over
the aligned entities per epoch (:mod:`facelib.systems.face.model.entities`). Entities held out of
the alignment never reach a loss; the validation ones give, at every evaluation, the
descriptor-quality signal ``align_mrr`` (:meth:`FACE.validation_metrics`).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any, NamedTuple

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from facelib.models.base import Regularizer
from facelib.systems.face.model.alignment import TextEncoder, encode_prompts, info_nce, sample_rows
from facelib.systems.face.model.entities import EntityBatches, EntitySplit
from facelib.systems.face.model.heap import keep_freed_memory
from facelib.systems.face.model.projection import ConceptProjection, ReconstructionHead, concept_layers
from facelib.systems.face.model.prompt import ITEM, USER, PromptBuilder, entity_kinds, word_inputs
from facelib.systems.face.model.quantizer import Quantized, TokenQuantizer, greedy_assign

if TYPE_CHECKING:
    from facelib.models.base import Backbone, BatchOutput

STAGES = ("map", "align")
ALIGN_BATCHES = ("triples", "entities")
REFERENCE_SWITCHES = (
    "reference_vq_weights",
    "reference_prompt_order",
    "encoder_dropout",
    "pinv_words",
    "reference_init",
)


@dataclass(frozen=True)
class FACEConfig:
    """FACE hyperparameters (reference values) and the reference-compatibility switches.

    Every switch defaults to the corrected behaviour; ``FACEConfig.reference()`` turns all
    of them on (the reference implementation, commit ccc558e).

    - ``reference_vq_weights``: (w_cb, w_commit) = (0.75, 0.25), else VQ-VAE's (1.0, 0.25).
    - ``reference_prompt_order``: prompts [P_user, P_item, P_item] repeated over the
      block-ordered batch (quirk 9.2), else users get P_user and items P_item.
    - ``encoder_dropout``: frozen text encoder in train mode (quirk 9.5), else eval mode.
    - ``pinv_words``: word inputs ``(z_q_st - a) pinv(A)^T`` (quirk 9.4), else the exact
      token embeddings with the same straight-through gradient.
    - ``reference_init``: W orthogonal across concepts only, b ~ N(0, 1) (quirk 9.6), else
      each W_c orthogonal and b = 0.

    ``align_entities`` (None = all 3B rows, the paper) bounds the rows aligned per step;
    ``decoder_same_init`` gives the decoder layer the encoder layer's initial weights
    (the reference's deep copy).

    Speed switches, all on by default after ``benchmarks/face_step.py`` (2-core CPU with
    AVX512-BF16, paper sizes: ``reports/benchmarks/face_step_cpu.json``). ``bf16`` and
    ``fast_dropout`` change rounding or random draws, not the method; with both off a step
    gives the earlier code's losses and gradients (float32 rounding). They are independent
    of :meth:`reference` (``FACEConfig.reference(bf16=False, fast_dropout=False)`` for the
    reference's float32 maths):

    - ``bf16``: the concept layers and the frozen text encoder run under bf16 autocast
      (projection, quantizer, head and losses stay float32); on the CPU the text encoder's
      attention then runs as eager matmul + softmax. Turn it off on CPUs without native
      bf16 (AVX512-BF16 or AMX), where bf16 matmuls are emulated.
    - ``fast_dropout``: the concept layers' dropout masks come from
      :class:`~facelib.systems.face.model.dropout.FastDropout` (same distribution, another
      random stream) instead of ``nn.Dropout``.
    - ``reuse_heap``: constructing FACE makes glibc's malloc keep freed memory for reuse
      (:func:`~facelib.systems.face.model.heap.keep_freed_memory`, process-wide), so the
      step's large buffers are not page-faulted anew every step; allocation only, same
      results.
    """

    word_num: int = 16
    word_dim: int = 256
    vq_weight: float = 1.0
    recons_weight: float = 1.0
    align_weight: float = 0.1
    tau: float = 0.02
    stage: str = "map"
    prompt_noun: str = "movie"
    ffn_dim: int = 2048
    dropout: float = 0.1
    decoder_same_init: bool = True
    align_entities: int | None = None
    align_batch: str = "triples"
    align_batch_size: int = 768
    reference_vq_weights: bool = False
    reference_prompt_order: bool = False
    encoder_dropout: bool = False
    pinv_words: bool = False
    reference_init: bool = False
    bf16: bool = True
    fast_dropout: bool = True
    reuse_heap: bool = True

    def __post_init__(self) -> None:
        for name in ("word_num", "word_dim", "ffn_dim"):
            if getattr(self, name) < 1:
                raise ValueError(f"FACEConfig.{name} must be >= 1, got {getattr(self, name)}")
        for name in ("vq_weight", "recons_weight", "align_weight"):
            if getattr(self, name) < 0:
                raise ValueError(f"FACEConfig.{name} must be >= 0, got {getattr(self, name)}")
        if self.tau <= 0:
            raise ValueError(f"FACEConfig.tau must be > 0, got {self.tau}")
        if not 0 <= self.dropout < 1:
            raise ValueError(f"FACEConfig.dropout must be in [0, 1), got {self.dropout}")
        if self.stage not in STAGES:
            raise ValueError(f"FACEConfig.stage must be one of {STAGES}, got {self.stage!r}")
        if self.align_batch not in ALIGN_BATCHES:
            raise ValueError(f"FACEConfig.align_batch must be one of {ALIGN_BATCHES}, got "
                             f"{self.align_batch!r}")
        if self.align_batch_size < 2:
            raise ValueError(f"FACEConfig.align_batch_size must be >= 2, got "
                             f"{self.align_batch_size}")
        if self.align_entities is not None and self.align_entities < 2:
            raise ValueError(
                f"FACEConfig.align_entities must be >= 2 or None (all rows), "
                f"got {self.align_entities}"
            )

    @classmethod
    def reference(cls, **overrides: Any) -> FACEConfig:
        """The reference implementation's behaviour: every compatibility switch on."""
        return cls(**{**dict.fromkeys(REFERENCE_SWITCHES, True), **overrides})

    def with_stage(self, stage: str) -> FACEConfig:
        """The same configuration for another stage ("map" or "align")."""
        return replace(self, stage=stage)


class FACEForward(NamedTuple):
    """Output of :meth:`FACE.forward`."""

    z_e: Tensor  # [N, C, D] encoded concept vectors
    quantized: Quantized  # z_q_st, z_q, indices [N, C], loss_cb, loss_commit
    x_hat: Tensor  # [N, d] reconstruction


class FACE(Regularizer):
    """The FACE module: CF embeddings -> C distinct vocabulary words per entity.

    Args:
        config: :class:`FACEConfig`.
        emb_dim: d, the backbone's embedding size.
        codebook: E_vocab [V, d_t], token embeddings of the descriptor vocabulary (frozen).
        encoder: the frozen text encoder (align stage; held, not registered).
        user_profiles: [n_users, d_s] profile embeddings of users (align stage).
        item_profiles: [n_items, d_s] profile embeddings of items (align stage).
        entities: which users and items are aligned and which held out (align stage;
            None: all aligned, no validation signal).

    A map-stage FACE enters the align stage in place with :meth:`enter_align`.
    """

    text_encoder: TextEncoder | None
    user_profiles: Tensor | None
    item_profiles: Tensor | None

    def __init__(
        self,
        config: FACEConfig,
        emb_dim: int,
        codebook: Tensor,
        *,
        encoder: TextEncoder | None = None,
        user_profiles: Tensor | None = None,
        item_profiles: Tensor | None = None,
        entities: EntitySplit | None = None,
    ):
        super().__init__()
        cfg = config
        self.config = cfg.with_stage("map")
        if cfg.reuse_heap:
            keep_freed_memory()
        self.projection = ConceptProjection(emb_dim, cfg.word_num, cfg.word_dim, cfg.reference_init)
        self.concept_encoder, self.concept_decoder = concept_layers(
            cfg.word_dim, cfg.ffn_dim, cfg.dropout, cfg.decoder_same_init, cfg.bf16,
            cfg.fast_dropout,
        )
        self.head = ReconstructionHead(emb_dim, cfg.word_num, cfg.word_dim)
        self.quantizer = TokenQuantizer(
            codebook, cfg.word_num, cfg.word_dim, cfg.reference_vq_weights
        )
        # held, never registered: not in parameters(), state_dict() or .to()
        object.__setattr__(self, "text_encoder", encoder)
        self.prompt: PromptBuilder | None = None
        self.register_buffer("user_profiles", None, persistent=False)
        self.register_buffer("item_profiles", None, persistent=False)
        self.entities: EntitySplit | None = None
        self.batches: EntityBatches | None = None
        self.register_buffer("align_users", None, persistent=False)  # [U] bool: aligned
        self.register_buffer("align_items", None, persistent=False)  # [I] bool
        if cfg.stage == "align":
            if encoder is None or user_profiles is None or item_profiles is None:
                raise ValueError(
                    "stage 'align' needs encoder=, user_profiles= and item_profiles=: pass "
                    "the frozen text encoder and the profile embeddings"
                )
            self.enter_align(encoder, user_profiles, item_profiles, entities)

    def enter_align(self, encoder: TextEncoder, user_profiles: Tensor, item_profiles: Tensor,
                    entities: EntitySplit | None = None) -> None:
        """Switch to the align stage in place (parameters untouched): hold the frozen
        encoder, the profile embeddings S [n, d_s] (L2-normalised here) and which entities
        are aligned (``entities``; None: all)."""
        cfg = self.config
        codebook = self.quantizer.codebook_tokens
        token_dim = encoder.token_embeddings.shape[1]
        if token_dim != codebook.shape[1]:
            raise ValueError(
                f"codebook has {codebook.shape[1]}-d rows but the encoder's tokens are "
                f"{token_dim}-d: build the codebook from this encoder's token embeddings"
            )
        for name, prof in (("user_profiles", user_profiles), ("item_profiles", item_profiles)):
            if prof.ndim != 2 or prof.shape[1] != encoder.dim:
                raise ValueError(
                    f"{name} has shape {tuple(prof.shape)}, expected [n, {encoder.dim}]: "
                    "encode the profiles with the same frozen encoder"
                )
            setattr(self, name, F.normalize(prof.detach().float(), dim=-1).to(codebook.device))
        object.__setattr__(self, "text_encoder", encoder)
        self.prompt = PromptBuilder.from_encoder(encoder, cfg.word_num, cfg.prompt_noun).to(
            codebook.device)
        self.entities = entities
        n_users, n_items = len(user_profiles), len(item_profiles)
        aligned = {"user": np.ones(n_users, bool), "item": np.ones(n_items, bool)}
        if entities is not None:
            for kind, n in (("user", n_users), ("item", n_items)):
                aligned[kind] = entities.part_of(kind, n) == "train"
        self.align_users = torch.from_numpy(aligned["user"]).to(codebook.device)
        self.align_items = torch.from_numpy(aligned["item"]).to(codebook.device)
        self.batches = None
        if cfg.align_batch == "entities":
            self.batches = EntityBatches(np.flatnonzero(aligned["user"]),
                                         np.flatnonzero(aligned["item"]), cfg.align_batch_size)
        self.config = cfg.with_stage("align")

    def encode(self, x: Tensor) -> Tensor:
        """x [N, d] -> z_e = Enc(proj(x)) [N, C, D]."""
        return self.concept_encoder(self.projection(x))

    def forward(self, x: Tensor) -> FACEForward:
        """x [N, d] -> :class:`FACEForward` (z_e, quantized, x_hat)."""
        z_e = self.encode(x)
        q = self.quantizer(z_e)
        x_hat = self.head(self.concept_decoder(q.z_q_st))
        return FACEForward(z_e, q, x_hat)

    def on_epoch_start(self, model: Backbone, epoch: int,
                       rng: np.random.Generator) -> int | None:
        """Entity batches (align stage): draw the epoch's pass over the aligned entities and
        ask for one step per batch."""
        if self.config.stage == "align" and self.batches is not None:
            return self.batches.start_epoch(rng)
        return None

    def losses(
        self, out: BatchOutput, users: Tensor, pos: Tensor, neg: Tensor
    ) -> dict[str, Tensor]:
        """Weighted FACE losses for one backbone batch (the Regularizer protocol).

        Args:
            out: the backbone's BatchOutput (``user_emb``, ``pos_emb``, ``neg_emb`` [B, d],
                ``all_user_emb`` [U, d], ``all_item_emb`` [I, d]).
            users, pos, neg: [B] ids, used to look up the profile targets S.

        Rows X: the block-ordered batch [users; pos; neg] [3B, d], or (align stage with
        entity batches) the next batch of distinct entities [users; items] from the
        propagated tables. Returns ``{"vq": vq_weight L_vq, "rec": recons_weight L_rec}``
        plus ``"align": align_weight L_align`` in the align stage.
        """
        cfg = self.config
        if cfg.stage == "align" and self.batches is not None:
            assert out.all_user_emb is not None and out.all_item_emb is not None
            u_ids, i_ids = self.batches.next(out.all_user_emb.device)
            x = torch.cat([out.all_user_emb[u_ids], out.all_item_emb[i_ids]])  # [N, d]
            kinds = torch.cat([torch.full_like(u_ids, USER), torch.full_like(i_ids, ITEM)])
            ids = (u_ids, i_ids)
        else:
            x = torch.cat([out.user_emb, out.pos_emb, out.neg_emb])  # [3B, d]
            kinds = entity_kinds(len(users), cfg.reference_prompt_order, x.device)  # [3B]
            ids = (users, torch.cat([pos, neg]))
        fwd = self(x)
        losses = {
            "vq": cfg.vq_weight * self.quantizer.vq_loss(fwd.quantized),
            "rec": cfg.recons_weight * F.mse_loss(fwd.x_hat, x.detach()),
        }
        if cfg.stage == "align":
            assert self.user_profiles is not None and self.item_profiles is not None
            assert self.align_users is not None and self.align_items is not None
            targets = torch.cat([self.user_profiles[ids[0]], self.item_profiles[ids[1]]])
            keep = torch.cat([self.align_users[ids[0]], self.align_items[ids[1]]])  # aligned
            losses["align"] = cfg.align_weight * self.align_loss(fwd.quantized, kinds, targets,
                                                                 keep)
        return losses

    def align_loss(self, q: Quantized, kinds: Tensor, targets: Tensor,
                   keep: Tensor | None = None) -> Tensor:
        """Unweighted ``L_align`` of N rows: q of the rows, ``kinds`` [N] USER/ITEM prompt
        per row, ``targets`` S [N, d_s]; ``keep`` [N] bool drops held-out rows; the
        ``align_entities`` bound then samples rows uniformly."""
        if self.prompt is None or self.text_encoder is None:
            raise RuntimeError("align_loss needs an align-stage FACE: build it with stage='align'")
        z_q_st, indices = q.z_q_st, q.indices
        if keep is not None and not bool(keep.all()):
            rows = torch.nonzero(keep).squeeze(1)
            z_q_st, indices, kinds, targets = z_q_st[rows], indices[rows], kinds[rows], targets[rows]
        if len(indices) < 2:  # no in-batch negative: nothing to contrast this step
            return z_q_st.sum() * 0.0
        rows = sample_rows(len(indices), self.config.align_entities, indices.device)
        if rows is not None:
            z_q_st, indices = z_q_st[rows], indices[rows]
            kinds, targets = kinds[rows], targets[rows]
        words = word_inputs(self.quantizer, z_q_st, indices, self.config.pinv_words)  # [N, C, d_t]
        embeds, mask = self.prompt(words, kinds)  # [N, L, d_t], [N, L]
        text = encode_prompts(self.text_encoder, embeds, mask, self.config.encoder_dropout,
                              self.config.bf16)
        return info_nce(text, targets, self.config.tau)

    def validation_metrics(self, model: Backbone) -> dict[str, float]:
        """Descriptor quality on the validation entities (align stage with held-out
        entities; else nothing): see :meth:`descriptor_quality`."""
        if self.config.stage != "align" or self.entities is None:
            return {}
        return self.descriptor_quality(model, "valid")

    @torch.no_grad()
    def descriptor_quality(self, model: Backbone, part: str) -> dict[str, float]:
        """How well the descriptors of the held-out ``part`` ("valid" or "test") entities
        find their own profiles: each entity's descriptor sentence (exact words, encoder in
        eval mode) ranks all profiles of its type; ``align_mrr_user`` / ``align_mrr_item``
        are the mean reciprocal ranks of the own profile, ``align_mrr`` their mean, and
        ``align_loss`` the unweighted InfoNCE among those rows (align stage only)."""
        if self.config.stage != "align" or self.entities is None:
            raise RuntimeError("descriptor_quality needs an align-stage FACE with held-out "
                               "entities (face.align_holdout > 0)")
        assert self.user_profiles is not None and self.item_profiles is not None
        was_training = self.training
        self.eval()
        user_emb, item_emb = model.embeddings_for_eval()
        out: dict[str, float] = {}
        texts, targets = [], []
        for kind, emb, ids, profiles in (
                ("user", user_emb, self.entities.users[part], self.user_profiles),
                ("item", item_emb, self.entities.items[part], self.item_profiles)):
            if len(ids) == 0:
                continue
            idx = torch.from_numpy(ids).to(emb.device)
            kinds = torch.full_like(idx, USER if kind == "user" else ITEM)
            text = self.encode_descriptors(self.describe(emb[idx]), kinds)  # [n, d_s]
            sims = text @ profiles.T                                         # [n, N_type]
            own = sims[torch.arange(len(idx)), idx]
            ranks = (sims > own[:, None]).sum(1) + 1
            out[f"align_mrr_{kind}"] = float((1.0 / ranks.double()).mean())
            texts.append(text)
            targets.append(profiles[idx])
        self.train(was_training)
        if not out:
            return {}
        out["align_mrr"] = float(np.mean(list(out.values())))
        out["align_loss"] = float(info_nce(torch.cat(texts), torch.cat(targets),
                                           self.config.tau))
        return out

    @torch.no_grad()
    def describe(self, x: Tensor, batch_size: int = 1024) -> Tensor:
        """Descriptor word indices (into the vocabulary) of entities x [N, d] -> [N, C].

        Eval mode (no dropout), no gradient, in chunks of ``batch_size`` rows; the C words of
        an entity are distinct.
        """
        was_training = self.training
        self.eval()
        try:
            codebook = self.quantizer.codebook()
            return torch.cat(
                [greedy_assign(self.encode(chunk), codebook) for chunk in x.split(batch_size)]
            )
        finally:
            self.train(was_training)

    @torch.no_grad()
    def encode_descriptors(self, indices: Tensor, kinds: Tensor, batch_size: int = 256) -> Tensor:
        """Frozen-encoder embeddings [N, d_s] of descriptor prompts (exact words, eval mode,
        ``batch_size`` sequences at a time).

        indices [N, C] word indices (from :meth:`describe`), kinds [N] USER/ITEM: the
        descriptor sentences used for descriptor -> profile retrieval.
        """
        if self.prompt is None or self.text_encoder is None:
            raise RuntimeError(
                "encode_descriptors needs an align-stage FACE: build it with stage='align'"
            )
        out = []
        for rows in torch.arange(len(indices), device=indices.device).split(batch_size):
            words = self.quantizer.codebook_tokens[indices[rows]]  # [b, C, d_t]
            embeds, mask = self.prompt(words, kinds[rows])
            out.append(encode_prompts(self.text_encoder, embeds, mask, dropout=False))
        return torch.cat(out) if out else indices.new_zeros((0, self.text_encoder.dim)).float()

    @torch.no_grad()
    def decode_words(self, indices: Tensor, batch_size: int = 1024) -> Tensor:
        """Decode given words back to the CF space: indices [N, C] -> x_hat [N, d].

        The decoder half of :meth:`forward` fed with chosen words instead of encoded
        concepts::

            z     = E_hat[k]                      [N, C, D]   E_hat = quantizer.codebook()
            x_hat = head(Enc_2(z))                [N, d]

        For an entity's own descriptors (``k = describe(x)``) this is the eval-mode
        reconstruction of x (z_q_st equals z_q in value). Word j fills concept slot j, so
        the order of the C words matters. Eval mode (no dropout), no gradient, in chunks
        of ``batch_size`` rows.
        """
        c = self.config.word_num
        if indices.ndim != 2 or indices.shape[1] != c:
            raise ValueError(
                f"decode_words needs word indices [N, {c}], got shape {tuple(indices.shape)}: "
                f"pass C={c} vocabulary indices per entity"
            )
        was_training = self.training
        self.eval()
        try:
            codebook = self.quantizer.codebook()  # [V, D]
            indices = indices.to(codebook.device, torch.long)
            return torch.cat(
                [self.head(self.concept_decoder(codebook[k])) for k in indices.split(batch_size)]
            )
        finally:
            self.train(was_training)
