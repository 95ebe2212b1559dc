"""DaRec's losses, reconstructed (the paper's §III formulas were not available).

All operate on row-normalised embeddings x̂ = x / ‖x‖ of one batch, n rows:

- **orthogonality** of a side's shared part H [n, k] and specific part P [n, k] (the
  disentangling term): ``‖Ĥᵀ P̂‖_F² / n``, zero when the two parts are orthogonal;
- **uniformity** of a shared part (DirectAU, as RLMRec's ``loss_utils``):
  ``log mean_{i<j} exp(−t ‖x̂_i − x̂_j‖²)``, t = 2;
- **global structure alignment** of the two sides' shared parts: ``‖Ŝ^C − Ŝ^L‖_F² / n²``
  with ``Ŝ = X̂ X̂ᵀ`` (cosine similarity matrices of the batch);
- **local structure alignment**: K preference centres per side (spherical K-means on the
  detached shared parts, farthest-point start: deterministic), centres matched one to one
  by the Hungarian method on their cosine similarity, then either ``center_match``:
  ``mean_k (1 − cos(c^C_k, c^L_π(k)))`` with the centres as differentiable means of their
  members, or ``assign_kl``: the symmetric KL between the rows' soft assignments
  ``softmax(x̂ ĉᵀ / τ)`` to the matched centres of either side.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from scipy.optimize import linear_sum_assignment
from torch import Tensor

LOCAL = ("center_match", "assign_kl", "off")  # the local alignment's reconstructions


def orthogonality(shared: Tensor, specific: Tensor) -> Tensor:
    """‖Ĥᵀ P̂‖_F² / n of shared [n, k] and specific [n, k'] parts (scalar)."""
    h, s = F.normalize(shared, dim=-1), F.normalize(specific, dim=-1)
    return (h.T @ s).pow(2).sum() / shared.shape[0]


def uniformity(x: Tensor, t: float = 2.0) -> Tensor:
    """log mean_{i<j} exp(−t ‖x̂_i − x̂_j‖²) over the rows of x [n, k] (scalar)."""
    return torch.pdist(F.normalize(x, dim=-1), p=2).pow(2).mul(-t).exp().mean().log()


def similarity(x: Tensor) -> Tensor:
    """Ŝ = X̂ X̂ᵀ, the cosine similarity matrix [n, n] of the rows of x [n, k]."""
    x = F.normalize(x, dim=-1)
    return x @ x.T


def global_alignment(cf_shared: Tensor, prf_shared: Tensor) -> Tensor:
    """‖Ŝ^C − Ŝ^L‖_F² / n² of the two sides' shared parts [n, k] (scalar)."""
    n = cf_shared.shape[0]
    return (similarity(cf_shared) - similarity(prf_shared)).pow(2).sum() / n ** 2


@torch.no_grad()
def spherical_kmeans(x: Tensor, k: int, iters: int = 10) -> Tensor:
    """Cluster of each row of x [n, d] among min(k, n) spherical K-means clusters, [n]
    int64; deterministic (farthest-point start from row 0, ties to the lowest index)."""
    x = F.normalize(x, dim=-1)
    k = min(k, x.shape[0])
    chosen = [0]
    for _ in range(1, k):
        closest = (x @ x[chosen].T).max(dim=1).values   # [n] similarity to the nearest pick
        chosen.append(int(torch.argmin(closest)))
    centres = x[chosen].clone()                          # [k, d]
    assign = torch.zeros(x.shape[0], dtype=torch.long)
    for _ in range(iters):
        assign = (x @ centres.T).argmax(dim=1)
        for c in range(k):
            members = x[assign == c]
            if len(members):
                centres[c] = F.normalize(members.mean(0), dim=0)
    return assign


def centres(x: Tensor, assign: Tensor, k: int) -> Tensor:
    """Unit mean of each cluster's rows of x [n, d] (differentiable), [k, d]; an empty
    cluster's centre is zero."""
    onehot = F.one_hot(assign, k).to(x.dtype)            # [n, k]
    sums = onehot.T @ F.normalize(x, dim=-1)             # [k, d]
    return F.normalize(sums, dim=-1)


def match(cf_centres: Tensor, prf_centres: Tensor) -> np.ndarray:
    """π: the profile centre matched to each CF centre (Hungarian, max total cosine)."""
    sim = (F.normalize(cf_centres, dim=-1) @ F.normalize(prf_centres, dim=-1).T).detach()
    rows, cols = linear_sum_assignment(sim.cpu().numpy(), maximize=True)
    return cols[np.argsort(rows)]


def local_alignment(cf_shared: Tensor, prf_shared: Tensor, k: int, mode: str = "center_match",
                    tau: float = 0.2) -> Tensor:
    """The local structure alignment of the shared parts [n, d] with K clusters per side
    (``mode`` one of :data:`LOCAL`; ``off`` gives 0)."""
    if mode not in LOCAL:
        raise ValueError(f"unknown local alignment {mode!r}; choose one of {LOCAL}")
    if mode == "off":
        return cf_shared.new_zeros(())
    k = min(k, cf_shared.shape[0])
    c_cf = centres(cf_shared, spherical_kmeans(cf_shared, k), k)      # [k, d]
    c_prf = centres(prf_shared, spherical_kmeans(prf_shared, k), k)   # [k, d]
    c_prf = c_prf[torch.as_tensor(match(c_cf, c_prf))]                # matched order
    if mode == "center_match":
        return (1.0 - (c_cf * c_prf).sum(-1)).mean()
    p_cf = F.log_softmax(F.normalize(cf_shared, dim=-1) @ c_cf.T / tau, dim=-1)   # [n, k]
    p_prf = F.log_softmax(F.normalize(prf_shared, dim=-1) @ c_prf.T / tau, dim=-1)
    kl = lambda p, q: (p.exp() * (p - q)).sum(-1).mean()  # noqa: E731  KL(p ‖ q), logs
    return 0.5 * (kl(p_cf, p_prf) + kl(p_prf, p_cf))
