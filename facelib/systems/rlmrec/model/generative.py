"""RLMRec-Gen: masked nodes reconstruct their profiles after propagation.

Each training step a share ``mask_ratio`` of all U + I nodes, drawn over the whole graph
(users and items together, without replacement), start propagation from a learnable
[MASK] embedding m [d] (zero-initialised) instead of their ego embedding:

    x̂_v = m  if v ∈ M else x_v,      ê = R(x̂)       (R: the backbone's propagation)

and each masked node's propagated embedding, mapped to the profile space by σ↑
(:func:`profile_mlp`), must match its own profile among the masked nodes' profiles (paper
Eq. 16 with f(s_i, e_i) = exp(sim(s_i, σ↑(ê_i))/τ)):

    L_gen = recon_weight · mean_{v ∈ M} ℓ(σ↑(ê_v); s_v, S_M)

with ℓ the InfoNCE of :func:`info_nce`. The same masked ego embeddings feed the BPR loss
of the step (as in RLMRec's code). |M| = round(mask_ratio · (U + I)), at least 1 (RLMRec:
⌊mask_ratio · (U + I)⌋, at least 1). The masks are drawn from a generator seeded at each
epoch start from the training loop's generator, so a run (and a resumed run) is
reproducible. Evaluation never masks.

L2 on m and σ↑ as in :mod:`facelib.systems.rlmrec.model.contrastive` (term ``l2``).
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor, nn

from facelib.models.base import Backbone, BatchOutput, Regularizer
from facelib.systems.rlmrec.model.infonce import info_nce
from facelib.systems.rlmrec.model.mlp import l2_penalty, profile_mlp

GRAPH_FREE = ("mf",)  # backbones without propagation: Gen is skipped on them (see the stage)


def mask_count(n_nodes: int, mask_ratio: float) -> int:
    """|M| = round(mask_ratio · n_nodes), at least 1 and at most n_nodes."""
    return min(n_nodes, max(1, int(round(mask_ratio * n_nodes))))


def choose_masked(n_nodes: int, mask_ratio: float, gen: np.random.Generator) -> np.ndarray:
    """|M| distinct node ids in [0, n_nodes) (users 0..U-1, then items U..U+I-1)."""
    return gen.choice(n_nodes, size=mask_count(n_nodes, mask_ratio), replace=False)


def mask_ego(ego: Tensor, masked: Tensor, token: Tensor) -> Tensor:
    """``ego`` [N, d] with rows ``masked`` [M] replaced by ``token`` [d] (differentiable in
    both)."""
    keep = torch.ones(ego.shape[0], 1, dtype=ego.dtype, device=ego.device)
    keep[masked] = 0.0
    return ego * keep + token.unsqueeze(0) * (1.0 - keep)


class RLMRecGen(Regularizer):
    """The [MASK] token, σ↑ and the reconstruction term of RLMRec-Gen.

    Args:
        user_profiles [U, d_s], item_profiles [I, d_s]: profile embeddings (frozen).
        dim: d, the backbone's embedding size.
        mask_ratio: share of all nodes masked per step; recon_weight: weight of L_gen;
        tau: InfoNCE temperature; reg: L2 weight on m and σ↑.
    """

    def __init__(self, user_profiles: Tensor, item_profiles: Tensor, dim: int,
                 mask_ratio: float, recon_weight: float, tau: float, reg: float = 0.0) -> None:
        super().__init__()
        if user_profiles.shape[1] != item_profiles.shape[1]:
            raise ValueError(f"user and item profiles differ in width "
                             f"({user_profiles.shape[1]} vs {item_profiles.shape[1]})")
        if not 0.0 < mask_ratio <= 1.0 or tau <= 0:
            raise ValueError(f"need 0 < mask_ratio <= 1 and tau > 0, got {mask_ratio}, {tau}")
        profiles = torch.cat([user_profiles, item_profiles], dim=0).float()
        self.register_buffer("profiles", profiles)                  # [U + I, d_s]
        self.n_users = int(user_profiles.shape[0])
        self.mask_token = nn.Parameter(torch.zeros(dim))            # m [d]
        self.mlp = profile_mlp(dim, profiles.shape[1])              # σ↑: d -> d_s
        self.mask_ratio, self.recon_weight = float(mask_ratio), float(recon_weight)
        self.tau, self.reg = float(tau), float(reg)
        self._gen: np.random.Generator | None = None
        self.masked: Tensor | None = None                           # M of the last step [|M|]

    def on_epoch_start(self, model: Backbone, epoch: int,
                       rng: np.random.Generator) -> int | None:
        """Seed this epoch's masks from the loop's generator (one draw per epoch)."""
        self._gen = np.random.default_rng(int(rng.integers(2**63)))
        return None

    def before_forward(self, model: Backbone, users: Tensor, pos: Tensor,
                       neg: Tensor) -> Tensor:
        """Draw M and return E^{(0)} with the masked rows set to m: [U + I, d]."""
        if self._gen is None:
            raise RuntimeError("RLMRecGen.on_epoch_start must run before a training step "
                               "(it seeds the masks from the loop's generator)")
        ego = model.ego_embeddings()                                # [N, d]
        if ego.shape[0] != self.profiles.shape[0]:
            raise ValueError(f"the backbone has {ego.shape[0]} nodes but the profiles "
                             f"{self.profiles.shape[0]}")
        ids = choose_masked(ego.shape[0], self.mask_ratio, self._gen)
        self.masked = torch.from_numpy(ids).to(ego.device)
        return mask_ego(ego, self.masked, self.mask_token)

    def reconstruction_loss(self, propagated: Tensor, masked: Tensor) -> Tensor:
        """mean_{v ∈ M} ℓ(σ↑(ê_v); s_v, S_M) for ``propagated`` [U + I, d]."""
        pred = self.mlp(propagated[masked])                         # [|M|, d_s]
        target = self.profiles[masked]                              # [|M|, d_s]
        return info_nce(pred, target, target, self.tau).mean()

    def losses(self, out: BatchOutput, users: Tensor, pos: Tensor,
               neg: Tensor) -> dict[str, Tensor]:
        if self.masked is None or out.all_user_emb is None or out.all_item_emb is None:
            raise RuntimeError("RLMRecGen needs before_forward's masks and the full "
                               "propagated tables of the step")
        propagated = torch.cat([out.all_user_emb, out.all_item_emb], dim=0)  # [N, d]
        terms = {"gen": self.recon_weight * self.reconstruction_loss(propagated, self.masked)}
        self.masked = None
        if self.reg > 0:
            terms["l2"] = self.reg * l2_penalty(self)
        return terms
