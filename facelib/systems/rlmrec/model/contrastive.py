"""RLMRec-Con: contrastive alignment of CF embeddings with projected profiles.

Profiles s [·, d_s] are mapped into the CF space by σ↓ (:func:`profile_mlp`) and each
batch embedding is pulled to its own projected profile against the others (paper Eq. 16
with f(s_i, e_i) = exp(sim(σ↓(s_i), e_i)/τ)). As RLMRec's ``kd_loss``, per batch of
BPR triples (u, i⁺, i⁻) of size B:

    L_con = kd_weight / B · [ Σ_u ℓ(e_u; σ↓(s_u), σ↓(S_U))          all U users' profiles
                            + Σ_i⁺ ℓ(e_i⁺; σ↓(s_i⁺), σ↓(s_{i⁺_1..B}))  in-batch positives
                            + Σ_i⁻ ℓ(e_i⁻; σ↓(s_i⁻), σ↓(s_{i⁻_1..B})) ] in-batch negatives

with ℓ the InfoNCE of :func:`info_nce` (cosine, temperature τ). Duplicates in a batch stay
duplicates among the candidates, as in the reference.

L2: RLMRec puts ``reg · Σ‖W‖²`` on every parameter, the MLP included. facelib's loop
gives a plug-in's parameters their own Adam group *without* weight decay (the backbone's
group decays by 2·reg, which is the gradient of reg·‖W‖²), so this module adds the term
``l2 = reg · Σ‖W_σ↓‖²`` itself: the same penalty on every parameter, one ``reg``.
"""

from __future__ import annotations

import torch
from torch import Tensor

from facelib.models.base import BatchOutput, Regularizer
from facelib.systems.rlmrec.model.infonce import info_nce
from facelib.systems.rlmrec.model.mlp import l2_penalty, profile_mlp


class RLMRecCon(Regularizer):
    """σ↓ and the contrastive term of RLMRec-Con.

    Args:
        user_profiles [U, d_s], item_profiles [I, d_s]: profile embeddings (frozen).
        dim: d, the backbone's embedding size.
        kd_weight: weight of L_con; tau: InfoNCE temperature; reg: L2 weight on σ↓.
    """

    def __init__(self, user_profiles: Tensor, item_profiles: Tensor, dim: int,
                 kd_weight: float, tau: float, reg: float = 0.0) -> None:
        super().__init__()
        if user_profiles.shape[1] != item_profiles.shape[1]:
            raise ValueError(f"user and item profiles differ in width "
                             f"({user_profiles.shape[1]} vs {item_profiles.shape[1]})")
        if tau <= 0:
            raise ValueError(f"tau must be > 0, got {tau}")
        self.register_buffer("user_profiles", user_profiles.float())  # [U, d_s]
        self.register_buffer("item_profiles", item_profiles.float())  # [I, d_s]
        self.mlp = profile_mlp(user_profiles.shape[1], dim)           # σ↓: d_s -> d
        self.kd_weight, self.tau, self.reg = float(kd_weight), float(tau), float(reg)

    def project_users(self) -> Tensor:
        """σ↓(S_U): every user's projected profile, [U, d]."""
        return self.mlp(self.user_profiles)

    def project_items(self, items: Tensor) -> Tensor:
        """σ↓(s_i) of ``items`` [B]: [B, d]."""
        return self.mlp(self.item_profiles[items])

    def contrastive_loss(self, user_emb: Tensor, pos_emb: Tensor, neg_emb: Tensor,
                         users: Tensor, pos: Tensor, neg: Tensor) -> Tensor:
        """The unweighted sum of the three InfoNCE terms over the batch, divided by B."""
        all_users = self.project_users()                       # [U, d]
        pos_prf, neg_prf = self.project_items(pos), self.project_items(neg)  # [B, d]
        total = (info_nce(user_emb, all_users[users], all_users, self.tau).sum()
                 + info_nce(pos_emb, pos_prf, pos_prf, self.tau).sum()
                 + info_nce(neg_emb, neg_prf, neg_prf, self.tau).sum())
        return total / user_emb.shape[0]

    def losses(self, out: BatchOutput, users: Tensor, pos: Tensor,
               neg: Tensor) -> dict[str, Tensor]:
        con = self.contrastive_loss(out.user_emb, out.pos_emb, out.neg_emb, users, pos, neg)
        terms = {"con": self.kd_weight * con}
        if self.reg > 0:
            terms["l2"] = self.reg * l2_penalty(self)
        return terms

    @torch.no_grad()
    def profile_cosine(self, user_emb: Tensor) -> Tensor:
        """cos(e_u, σ↓(s_u)) of every user, [U] (what the alignment raises)."""
        proj = self.project_users()
        return torch.nn.functional.cosine_similarity(user_emb, proj, dim=-1)
