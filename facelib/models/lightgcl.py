"""LightGCL (Cai et al., ICLR 2023) as FACE's reference implementation runs it.

With Ã = D_u^{-1/2} R D_i^{-1/2} the user-item normalised matrix [U, I] (the off-diagonal
block of LightGCN's Â, so the GNN view below is LightGCN's propagation without edge
dropout) and its rank-q truncated SVD Ã ≈ U_q S_q V_qᵀ:

    GNN view  E_u^{(l)} = Ã E_i^{(l-1)},          E_i^{(l)} = Ãᵀ E_u^{(l-1)}
    SVD view  G_u^{(l)} = U_q S_q V_qᵀ E_i^{(l-1)},  G_i^{(l)} = V_q S_q U_qᵀ E_u^{(l-1)}
    E = Σ_{l=0..L} E^{(l)},  G = Σ_{l=0..L} G^{(l)}   (G^{(0)} = E^{(0)}; sums, layer 0 in)

The contrastive term (unnormalised dot products, temperature τ) over the batch users a and
positive items p, against all users / all items of the GNN view:

    L_cl = Σ_{X ∈ {u: a, i: p}} [ −mean clamp(G_X[x]·E_X[x] / τ, −5, 5)
                                  + mean log Σ_j exp(G_X[x]·E_X[j] / τ) ]
    L = L_bpr(E) + cl_weight · L_cl

Scoring uses E, computed afresh for evaluation (the reference reuses the E of the last
training forward). The SVD is computed once from the training matrix with ARPACK from a
fixed start vector, so it does not draw from the run's random stream, and each singular
pair's sign is fixed by a rule; the reference's
``log(Σ exp + 1e-8)`` is computed as a stable log-sum-exp.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp
import scipy.sparse.linalg as spla
import torch
from torch import Tensor

from facelib.models.base import BatchOutput, bpr_loss
from facelib.models.graph import spmm
from facelib.models.lightgcn import LightGCN


def truncated_svd(train: sp.spmatrix, q: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(U_q [U, q], s [q] descending, V_q [I, q]) of Ã = D_u^{-1/2} R D_i^{-1/2}
    (isolated users or items: degree taken as 1); deterministic."""
    r = sp.csr_matrix(train, dtype=np.float64)
    r.data[:] = 1.0
    r.sum_duplicates()
    r.data[:] = 1.0
    if not 1 <= q < min(r.shape):
        raise ValueError(f"svd_q must be in [1, {min(r.shape) - 1}] for a {r.shape[0]} x "
                         f"{r.shape[1]} matrix, got {q}; set train_cf.svd_q")
    du = 1.0 / np.sqrt(np.maximum(np.asarray(r.sum(axis=1)).ravel(), 1.0))
    di = 1.0 / np.sqrt(np.maximum(np.asarray(r.sum(axis=0)).ravel(), 1.0))
    a = sp.diags(du) @ r @ sp.diags(di)
    u, s, vt = spla.svds(a, k=q, v0=np.ones(min(a.shape)) / np.sqrt(min(a.shape)))
    order = np.argsort(-s)
    u, s, v = u[:, order], s[order], vt[order].T
    # a singular pair's sign is arbitrary: make the first large entry of each u column
    # positive (first entry of at least half the column's largest magnitude)
    big = np.abs(u) >= 0.5 * np.abs(u).max(axis=0, keepdims=True)
    flip = np.sign(u[big.argmax(axis=0), np.arange(u.shape[1])])
    return u * flip, s, v * flip


class LightGCL(LightGCN):
    """LightGCN's propagation without edge dropout + an SVD view + its contrastive term."""

    name = "lightgcl"

    def __init__(self, n_users: int, n_items: int, dim: int, train_matrix: sp.spmatrix, *,
                 layers: int, svd_q: int, cl_weight: float, cl_temp: float) -> None:
        super().__init__(n_users, n_items, dim, train_matrix, layers=layers, keep_rate=1.0)
        if cl_weight < 0 or cl_temp <= 0:
            raise ValueError(f"LightGCL needs cl_weight >= 0 and cl_temp > 0; got "
                             f"{cl_weight}, {cl_temp}; set train_cf.cl_weight / cl_temp")
        u, s, v = truncated_svd(train_matrix, svd_q)
        f32 = lambda x: torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))  # noqa: E731
        # rebuilt from the training matrix, like the adjacency: not saved in checkpoints
        self.register_buffer("u_mul_s", f32(u * s), persistent=False)   # U_q S_q [U, q]
        self.register_buffer("v_mul_s", f32(v * s), persistent=False)   # V_q S_q [I, q]
        self.register_buffer("ut", f32(u.T), persistent=False)          # U_qᵀ [q, U]
        self.register_buffer("vt", f32(v.T), persistent=False)          # V_qᵀ [q, I]
        self.svd_q, self.cl_weight, self.cl_temp = int(svd_q), float(cl_weight), float(cl_temp)

    def views(self, ego: Tensor) -> tuple[Tensor, Tensor]:
        """(E, G): the GNN and SVD views' layer sums [U + I, d] from ``ego`` [U + I, d]."""
        a, a_t = self.adjacency.matrices()
        n_u = self.n_users
        e_prev, e_sum, g_sum = ego, ego, ego
        for _ in range(self.layers):
            g_u = self.u_mul_s @ (self.vt @ e_prev[n_u:])   # [U, d]
            g_i = self.v_mul_s @ (self.ut @ e_prev[:n_u])   # [I, d]
            e_prev = spmm(a, a_t, e_prev)                   # [N, d]
            e_sum = e_sum + e_prev
            g_sum = g_sum + torch.cat([g_u, g_i])
        return e_sum, g_sum

    def forward_batch(self, users: Tensor, pos: Tensor, neg: Tensor,
                      ego: Tensor | None = None) -> BatchOutput:
        """BPR on E + the weighted contrastive loss ``"cl"`` between G and E."""
        ego = self.ego_embeddings() if ego is None else ego
        e, g = self.views(ego)
        u_all, i_all = e[: self.n_users], e[self.n_users:]
        out = BatchOutput(u_all[users], i_all[pos], i_all[neg],
                          all_user_emb=u_all, all_item_emb=i_all)
        out.losses["bpr"] = bpr_loss(out.user_emb, out.pos_emb, out.neg_emb)
        if self.cl_weight > 0:
            cl = (contrastive(g[: self.n_users], u_all, users, self.cl_temp)
                  + contrastive(g[self.n_users:], i_all, pos, self.cl_temp))
            out.losses["cl"] = self.cl_weight * cl
        return out


def contrastive(g: Tensor, e: Tensor, anchors: Tensor, temp: float) -> Tensor:
    """−mean clamp(g_a·e_a/τ, −5, 5) + mean logsumexp_j(g_a·e_j/τ) over ``anchors`` [B]
    (duplicates kept), g and e [M, d] the two views of all M users (or items)."""
    ga = g[anchors]                                                    # [B, d]
    pos = ((ga * e[anchors]).sum(-1) / temp).clamp(-5.0, 5.0)         # [B]
    neg = torch.logsumexp(ga @ e.T / temp, dim=1)                     # [B]
    return neg.mean() - pos.mean()
