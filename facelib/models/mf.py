"""BPR-MF ("gmf" in the reference): one free embedding per user and item.

    e_u = P[u],  e_i = Q[i],  ŷ(u, i) = ⟨e_u, e_i⟩,  L = L_bpr

P [U, d] and Q [I, d] are xavier-uniform initialised; no neural layer.
"""

from __future__ import annotations

import torch
from torch import Tensor

from facelib.models.base import Backbone, xavier_embedding


class MF(Backbone):
    """Matrix factorisation trained with BPR."""

    name = "mf"

    def __init__(self, n_users: int, n_items: int, dim: int) -> None:
        super().__init__(n_users, n_items, dim)
        self.user_embedding = xavier_embedding(n_users, dim)  # P [U, d]
        self.item_embedding = xavier_embedding(n_items, dim)  # Q [I, d]

    def ego_embeddings(self) -> Tensor:
        """[P; Q], [U + I, d]."""
        return torch.cat([self.user_embedding, self.item_embedding], dim=0)

    def propagate(self, stochastic: bool | None = None,
                  ego: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """(P [U, d], Q [I, d]) or the rows of ``ego``: MF has no propagation and no
        randomness."""
        if ego is None:
            return self.user_embedding, self.item_embedding
        return ego[: self.n_users], ego[self.n_users:]
