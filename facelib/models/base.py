"""What every CF backbone and every alignment plug-in agrees on.

A :class:`Backbone` holds user and item embeddings and scores by dot product,
``ŷ(u, i) = ⟨e_u, e_i⟩``. Training is BPR (Rendle et al., 2009) over triples (u, i⁺, i⁻):

    L_bpr = mean_b softplus(⟨e_u, e_i⁻⟩ − ⟨e_u, e_i⁺⟩)

L2 regularisation is *not* a loss term: the trainer applies it as Adam weight decay
``2·reg`` (the reference's behaviour). A backbone adds its own auxiliary terms (SimGCL's
contrastive loss) to ``BatchOutput.losses``; an alignment plug-in (FACE, RLMRec-Con/Gen,
DaRec) is a :class:`Regularizer` whose weighted losses the trainer adds on top, reading the
same batch embeddings.

Hooks of a :class:`Regularizer` beyond its losses (all optional, default: do nothing):

- :meth:`Regularizer.before_forward` may return replacement ego embeddings E^{(0)} [N, d]
  for the step (RLMRec-Gen masks nodes *before* propagation); the trainer passes them to
  :meth:`Backbone.forward_batch` as ``ego=``;
- :meth:`Regularizer.on_epoch_start` runs before each epoch with the trainer's generator
  (DaRec re-clusters; FACE draws its alignment batches of distinct entities) and may ask
  for the epoch's number of steps;
- :meth:`Regularizer.validation_metrics` adds signals of its own to each evaluation (FACE:
  descriptor quality on held-out entities), which a phase may early-stop on.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from torch import Tensor, nn

if TYPE_CHECKING:
    import numpy as np


@dataclass
class BatchOutput:
    """One training batch's embeddings and weighted losses.

    Attributes:
        user_emb [B, d]: e_u of the batch users (the embeddings scoring uses; SimGCL: the
            clean, unperturbed view).
        pos_emb [B, d]: e_i of the positive items.
        neg_emb [B, d]: e_i of the sampled negative items.
        losses: already weighted terms, summed by the trainer: ``"bpr"``, plus e.g.
            ``"cl"`` (SimGCL).
        all_user_emb [U, d], all_item_emb [I, d]: the full propagated tables the batch rows
            were gathered from (for plug-ins that need them; do not modify).
    """

    user_emb: Tensor
    pos_emb: Tensor
    neg_emb: Tensor
    losses: dict[str, Tensor] = field(default_factory=dict)
    all_user_emb: Tensor | None = None
    all_item_emb: Tensor | None = None


def bpr_loss(user_emb: Tensor, pos_emb: Tensor, neg_emb: Tensor) -> Tensor:
    """``mean softplus(s⁻ − s⁺)`` with ``s = ⟨e_u, e_i⟩``; inputs [B, d], output scalar."""
    pos = (user_emb * pos_emb).sum(-1)  # [B]
    neg = (user_emb * neg_emb).sum(-1)  # [B]
    return F.softplus(neg - pos).mean()


class Backbone(nn.Module):
    """Base class of CF backbones (BPR-MF, LightGCN, SimGCL, ...).

    Subclasses implement :meth:`propagate`; they may override :meth:`forward_batch` to add
    auxiliary losses. Embeddings for evaluation are computed once without stochasticity and
    cached until the module is put back in training mode or any parameter changes.

    Attributes:
        n_users (U), n_items (I), dim (d).
    """

    name: str = "backbone"

    def __init__(self, n_users: int, n_items: int, dim: int) -> None:
        super().__init__()
        if n_users < 1 or n_items < 1:
            raise ValueError(f"a backbone needs >= 1 user and item, got {n_users} x {n_items}")
        if dim < 1:
            raise ValueError(f"embedding dim must be >= 1, got {dim}; set train_cf.dim > 0")
        self.n_users, self.n_items, self.dim = int(n_users), int(n_items), int(dim)
        self._eval_cache: tuple[tuple, tuple[Tensor, Tensor]] | None = None

    # -- to implement -------------------------------------------------------------------
    def ego_embeddings(self) -> Tensor:
        """E^{(0)} = [P; Q], the free embeddings of users then items: [U + I, d]."""
        raise NotImplementedError

    def propagate(self, stochastic: bool | None = None,
                  ego: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """Final embeddings (user [U, d], item [I, d]). ``stochastic`` (default:
        ``self.training``) switches on training-time randomness such as edge dropout;
        ``ego`` [U + I, d] replaces :meth:`ego_embeddings` as the input (a regulariser's
        masked nodes)."""
        raise NotImplementedError

    # -- training -----------------------------------------------------------------------
    def forward_batch(self, users: Tensor, pos: Tensor, neg: Tensor,
                      ego: Tensor | None = None) -> BatchOutput:
        """Embeddings and losses of a batch of BPR triples (users, pos, neg: [B] int64),
        propagated from ``ego`` [U + I, d] when given."""
        u_all, i_all = self.propagate(ego=ego)
        out = BatchOutput(u_all[users], i_all[pos], i_all[neg],
                          all_user_emb=u_all, all_item_emb=i_all)
        out.losses["bpr"] = bpr_loss(out.user_emb, out.pos_emb, out.neg_emb)
        return out

    def forward(self, users: Tensor, pos: Tensor, neg: Tensor,
                ego: Tensor | None = None) -> BatchOutput:
        return self.forward_batch(users, pos, neg, ego)

    # -- evaluation ---------------------------------------------------------------------
    def _params_key(self) -> tuple:
        return tuple((id(p), p._version, p.device) for p in self.parameters())

    def train(self, mode: bool = True) -> "Backbone":
        if mode:
            self._eval_cache = None
        return super().train(mode)

    @torch.no_grad()
    def embeddings_for_eval(self) -> tuple[Tensor, Tensor]:
        """Deterministic final embeddings (user [U, d], item [I, d]) for ranking; cached
        until :meth:`train` is called or a parameter is updated in place."""
        key = self._params_key()
        if self._eval_cache is None or self._eval_cache[0] != key:
            u, i = self.propagate(stochastic=False)
            self._eval_cache = (key, (u.detach().clone(), i.detach().clone()))
        return self._eval_cache[1]

    def score(self, users: Tensor) -> Tensor:
        """Dot-product scores of ``users`` [B] against every item: [B, I]."""
        u, i = self.embeddings_for_eval()
        return u[users.to(u.device)] @ i.T


class Regularizer(nn.Module):
    """Protocol of alignment plug-ins (FACE, RLMRec-Con/Gen, DaRec).

    Per step the trainer calls :meth:`before_forward` (which may replace the ego
    embeddings), the backbone's :meth:`Backbone.forward_batch`, then :meth:`losses`, and
    adds the returned (already weighted) terms to the loss. Its parameters form their own
    Adam group (plug-in lr, no weight decay) beside the backbone's (lr · base_lr_scale,
    weight decay 2·reg). Keys must not collide with the backbone's loss names.
    """

    def losses(self, out: BatchOutput, users: Tensor, pos: Tensor,
               neg: Tensor) -> dict[str, Tensor]:
        """Weighted loss terms for one batch; ``out`` holds the batch embeddings [B, d]."""
        raise NotImplementedError

    def before_forward(self, model: Backbone, users: Tensor, pos: Tensor,
                       neg: Tensor) -> Tensor | None:
        """Replacement ego embeddings [U + I, d] for this step, or None (the default)."""
        return None

    def on_epoch_start(self, model: Backbone, epoch: int,
                       rng: np.random.Generator) -> int | None:
        """Runs before every training epoch with the trainer's generator (draw from it, not
        from a generator of your own, so that a resumed run draws the same). May return
        the number of steps this epoch needs (e.g. batches of entities to align); None
        (the default) leaves the epoch a full pass over the training interactions."""
        return None

    def validation_metrics(self, model: Backbone) -> dict[str, float]:
        """Extra validation signals at each evaluation, e.g. ``{"align_mrr": ...}``
        (higher is better for any key a phase selects on); the default has none."""
        return {}


def xavier_embedding(n: int, dim: int) -> nn.Parameter:
    """An [n, dim] embedding table, xavier-uniform (bound sqrt(6 / (n + dim)))."""
    return nn.Parameter(nn.init.xavier_uniform_(torch.empty(n, dim)))
