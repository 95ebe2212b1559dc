"""DaRec's regulariser (reconstructed): disentangle each side, align only the shared parts.

Per batch of BPR triples (u, i⁺, i⁻) of size B, the CF side is E^C = [e_u; e_i⁺] [2B, d]
(the backbone's propagated embeddings) and the profile side E^L = [s_u; s_i⁺] [2B, d_s]
(the frozen profile embeddings). Four projections (MLPs, :func:`profile_mlp`) split them:

    H^X = f_X,sh(E^X),  P^X = f_X,sp(E^X)     X ∈ {C, L},  [2B, k] each (k = shared_dim)

    L_darec = α · Σ_X (ortho(H^X, P^X) + unif(H^X))  +  β · (L_G(H^C, H^L) + L_L(H^C, H^L))

with the losses of :mod:`facelib.systems.darec.model.structure`, each behind a switch
(``ortho``, ``uniformity``, ``global_align``, ``local``). Scoring uses the backbone's CF
embeddings unchanged. L2 on the projections as RLMRec's (term ``l2``).
"""

from __future__ import annotations

import torch
from torch import Tensor

from facelib.models.base import BatchOutput, Regularizer
from facelib.systems.darec.model.structure import (LOCAL, global_alignment, local_alignment,
                                                   orthogonality, uniformity)
from facelib.systems.rlmrec.model.mlp import l2_penalty, profile_mlp


class DaRec(Regularizer):
    """The shared and specific projections of both sides and DaRec's weighted terms.

    Args:
        user_profiles [U, d_s], item_profiles [I, d_s]: profile embeddings (frozen).
        dim: d, the backbone's embedding size; shared_dim: k.
        alpha: weight of the disentangling terms; beta: of the structure alignment.
        clusters: K preference centres per side; tau: temperature of ``assign_kl``.
        ortho, uniformity, global_align: switches; local: one of :data:`LOCAL`.
        reg: L2 weight on the projections.
    """

    def __init__(self, user_profiles: Tensor, item_profiles: Tensor, dim: int,
                 shared_dim: int = 32, alpha: float = 1e-2, beta: float = 1e-1,
                 clusters: int = 8, tau: float = 0.2, ortho: bool = True,
                 uniformity: bool = True, global_align: bool = True,
                 local: str = "center_match", reg: float = 0.0) -> None:
        super().__init__()
        if user_profiles.shape[1] != item_profiles.shape[1]:
            raise ValueError(f"user and item profiles differ in width "
                             f"({user_profiles.shape[1]} vs {item_profiles.shape[1]})")
        if local not in LOCAL:
            raise ValueError(f"unknown local alignment {local!r}; choose one of {LOCAL}")
        d_s = user_profiles.shape[1]
        self.register_buffer("user_profiles", user_profiles.float())  # [U, d_s]
        self.register_buffer("item_profiles", item_profiles.float())  # [I, d_s]
        self.cf_shared, self.cf_specific = profile_mlp(dim, shared_dim), profile_mlp(dim, shared_dim)
        self.prf_shared, self.prf_specific = profile_mlp(d_s, shared_dim), profile_mlp(d_s, shared_dim)
        self.alpha, self.beta, self.clusters, self.tau = float(alpha), float(beta), clusters, tau
        self.ortho, self.uniformity, self.global_align = ortho, uniformity, global_align
        self.local, self.reg = local, float(reg)

    def parts(self, cf: Tensor, prf: Tensor) -> dict[str, Tensor]:
        """H^C, P^C of the CF rows cf [n, d] and H^L, P^L of the profile rows prf [n, d_s]."""
        return {"cf_sh": self.cf_shared(cf), "cf_sp": self.cf_specific(cf),
                "prf_sh": self.prf_shared(prf), "prf_sp": self.prf_specific(prf)}

    def terms(self, cf: Tensor, prf: Tensor) -> dict[str, Tensor]:
        """The unweighted terms on the rows cf [n, d] and prf [n, d_s] (switched-off ones
        absent): ``dis`` (orthogonality + uniformity, both sides), ``global``, ``local``."""
        h = self.parts(cf, prf)
        out: dict[str, Tensor] = {}
        dis = [orthogonality(h[f"{x}_sh"], h[f"{x}_sp"]) for x in ("cf", "prf") if self.ortho]
        dis += [uniformity(h[f"{x}_sh"]) for x in ("cf", "prf") if self.uniformity]
        if dis:
            out["dis"] = torch.stack(dis).sum()
        if self.global_align:
            out["global"] = global_alignment(h["cf_sh"], h["prf_sh"])
        if self.local != "off":
            out["local"] = local_alignment(h["cf_sh"], h["prf_sh"], self.clusters, self.local,
                                           self.tau)
        return out

    def losses(self, out: BatchOutput, users: Tensor, pos: Tensor,
               neg: Tensor) -> dict[str, Tensor]:
        cf = torch.cat([out.user_emb, out.pos_emb])                          # [2B, d]
        prf = torch.cat([self.user_profiles[users], self.item_profiles[pos]])  # [2B, d_s]
        t = self.terms(cf, prf)
        weighted = {}
        if "dis" in t:
            weighted["dis"] = self.alpha * t["dis"]
        structure = [t[k] for k in ("global", "local") if k in t]
        if structure:
            weighted["align"] = self.beta * torch.stack(structure).sum()
        if self.reg > 0:
            weighted["l2"] = self.reg * l2_penalty(self)
        return weighted
