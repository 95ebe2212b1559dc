"""LightGCN (He et al., SIGIR 2020) as the reference implementation runs it.

With Â = D^{-1/2} A D^{-1/2} the normalised bipartite adjacency [N, N] (N = U + I,
:mod:`facelib.models.graph`) and E^{(0)} = [P; Q] [N, d] the free (xavier) embeddings:

    E^{(l+1)} = Â E^{(l)},   l = 0..L-1
    E = Σ_{l=0..L} E^{(l)}                    (a **sum**, layer 0 included, as the reference)
    e_u = E[u],  e_i = E[U + i],  L = L_bpr

Training-time edge dropout keeps each nonzero of Â with probability ``keep_rate`` and does
not rescale or renormalise the kept ones (one fresh mask per batch, as the reference's
``EdgeDrop``). Evaluation uses the full graph.
"""

from __future__ import annotations

import scipy.sparse as sp
import torch
from torch import Tensor

from facelib.models.graph import NormalizedAdjacency, normalized_adjacency, spmm
from facelib.models.base import Backbone, xavier_embedding


class LightGCN(Backbone):
    """LightGCN with layer-sum readout and optional edge dropout."""

    name = "lightgcn"

    def __init__(self, n_users: int, n_items: int, dim: int, train_matrix: sp.spmatrix, *,
                 layers: int, keep_rate: float) -> None:
        super().__init__(n_users, n_items, dim)
        if layers < 1:
            raise ValueError(f"LightGCN needs layers >= 1, got {layers}; set train_cf.layers")
        if not 0.0 < keep_rate <= 1.0:
            raise ValueError(f"keep_rate must be in (0, 1], got {keep_rate}; "
                             f"set train_cf.keep_rate")
        if tuple(train_matrix.shape) != (n_users, n_items):
            raise ValueError(f"train matrix is {train_matrix.shape}, expected "
                             f"({n_users}, {n_items})")
        self.layers, self.keep_rate = int(layers), float(keep_rate)
        self.user_embedding = xavier_embedding(n_users, dim)  # P [U, d]
        self.item_embedding = xavier_embedding(n_items, dim)  # Q [I, d]
        adj = normalized_adjacency(train_matrix)
        # buffers follow .to(device) and are not saved (rebuilt from the training matrix)
        self.register_buffer("adj_crow", adj.crow, persistent=False)
        self.register_buffer("adj_col", adj.col, persistent=False)
        self.register_buffer("adj_values", adj.values, persistent=False)
        self.register_buffer("adj_transpose_perm", adj.transpose_perm, persistent=False)

    @property
    def adjacency(self) -> NormalizedAdjacency:
        """Â on the module's device."""
        return NormalizedAdjacency(self.n_users, self.n_items, self.adj_crow, self.adj_col,
                                   self.adj_values, self.adj_transpose_perm)

    def ego_embeddings(self) -> Tensor:
        """E^{(0)} = [P; Q], [N, d]."""
        return torch.cat([self.user_embedding, self.item_embedding], dim=0)

    def layer_sum(self, a: Tensor, a_t: Tensor, ego: Tensor) -> Tensor:
        """Σ_{l=0..L} Â^l E^{(0)}, [N, d]."""
        out, e = ego, ego
        for _ in range(self.layers):
            e = spmm(a, a_t, e)  # E^{(l+1)} = Â E^{(l)}, [N, d]
            out = out + e
        return out

    def propagate(self, stochastic: bool | None = None,
                  ego: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """(e_u [U, d], e_i [I, d]) from ``ego`` (default E^{(0)}); edge dropout when
        ``stochastic`` (default: training)."""
        stochastic = self.training if stochastic is None else stochastic
        adj = self.adjacency
        values = adj.dropout_values(self.keep_rate) if stochastic else adj.values
        a, a_t = adj.matrices(values)
        e = self.layer_sum(a, a_t, self.ego_embeddings() if ego is None else ego)
        return e[: self.n_users], e[self.n_users:]
