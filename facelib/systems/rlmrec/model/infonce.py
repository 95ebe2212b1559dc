"""The InfoNCE bound RLMRec maximises (paper Eqs. 16-18), with cosine similarity.

For an anchor e_i, its own target s_i and a candidate set S that contains s_i,

    f(s, e) = exp(sim(s, e) / τ),      sim = cosine
    ℓ_i = −log [ f(s_i, e_i) / Σ_{s_j ∈ S} f(s_j, e_i) ]
        = −sim(s_i, e_i)/τ + log Σ_j exp(sim(s_j, e_i)/τ)

``L_info = E_i ℓ_i`` lower-bounds −I(e; s) up to a constant. RLMRec's code
(``cal_infonce_loss``, ``ssl_con_loss``) writes the same quantity with ``log(sum(exp))``
and small epsilons; here the log-sum-exp is computed stably and vectors are normalised
with :func:`torch.nn.functional.normalize` (norm clamped at 1e-12).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor


def info_nce(anchors: Tensor, targets: Tensor, candidates: Tensor, tau: float) -> Tensor:
    """Per-row InfoNCE ℓ_i [B] of ``anchors`` [B, d] against their own ``targets`` [B, d]
    among ``candidates`` [M, d] (which should contain each target), cosine / ``tau``."""
    a = F.normalize(anchors, dim=-1)              # [B, d]
    t = F.normalize(targets, dim=-1)              # [B, d]
    c = F.normalize(candidates, dim=-1)           # [M, d]
    positive = (a * t).sum(-1) / tau              # [B]
    logits = a @ c.T / tau                        # [B, M]
    return torch.logsumexp(logits, dim=-1) - positive
