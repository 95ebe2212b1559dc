"""SASRec (Kang & McAuley, 2018) and the study's CF backbones on the leave-one-out protocol.

SASRec is the sequential reference point of the leave-one-out table (LC-Rec compares
against it); MF and LightGCN, trained with the study's own loop, are the familiar CF
reference points on the same split. Everything here ranks **all** items for every user
without masking the history, as LC-Rec's ``test.py`` (see
:mod:`facelib.generative.leave_one_out`), with ties broken by ascending item id.

Model. Items are shifted by +1 so that index 0 is the padding; a user's most recent
``T <= max_len`` items ``s_1..s_T`` are right-aligned in a left-padded row. With the shared
item table ``E`` [I + 1, d] (row 0 = padding) and learned positions ``P`` [max_len, d]:

    x_t^{(0)} = sqrt(d) · E[s_t] + P[p_t]          (p_t = number of real items before t)
    x^{(b)}   = Block_b(x^{(b-1)}),   b = 1..layers
    h_t       = LayerNorm(x_t^{(layers)})
    r_{t,i}   = ⟨h_t, E[i + 1]⟩                      (score of item i after s_1..s_t)

Each pre-norm block is

    a = x + Dropout(MHA(LN(x)))     (position t attends to real positions j <= t only)
    y = a + Dropout(W_2 · Dropout(ReLU(W_1 · LN(a) + b_1)) + b_2)   (W_1, W_2: d x d)

Positions count real items from the oldest one in the window (``p_t``), not cells of the
padded row, so any amount of left padding gives the same hidden states (a training prefix
of length t and an inference history of length t share their positions). Padding cells
are masked as keys and zeroed; a padding cell attends to itself only, so that no row of
the attention is fully masked (which would give NaN).

Training (teacher forcing). Per user the training sequence is its history before the
validation target; each epoch takes the most recent ``max_len + 1`` items of every user in
a shuffled order, inputs ``seq[:-1]``, targets ``seq[1:]``, and the loss over the non-pad
positions: ``"ce"`` the full softmax over all items, ``- log softmax_i(r_t)[s_{t+1}]``;
``"bce"`` the paper's one sampled negative ``n_t`` per position (uniform over the items
the user has not trained on), ``- log σ(r_{t,s_{t+1}}) - log(1 - σ(r_{t,n_t}))``. Adam
(betas 0.9, 0.98, as the reference code) with early stopping on validation NDCG@10
(:func:`facelib.generative.fit.fit_early_stopping`).
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from facelib.config import build
from facelib.data import RecDataset
from facelib.generative.fit import FitLog, StopRule, fit_early_stopping
from facelib.generative.leave_one_out import HR_KS, NDCG_KS, SPLITS, LeaveOneOut, loo_metrics
from facelib.models import make_backbone
from facelib.models.sampling import BPRSampler
from facelib.seed import seed_everything
from facelib.train.loop import FitResult, fit
from facelib.train.params import TrainCFParams
from facelib.train.stage import _run_params, fit_config

LOSSES = ("ce", "bce")
METRIC_KEYS = tuple(f"hr@{k}" for k in HR_KS) + tuple(f"ndcg@{k}" for k in NDCG_KS)
EVAL_BATCH = 1024  # users per ranking block
ADAM_BETAS = (0.9, 0.98)  # the reference implementation's


# ----------------------------------------------------------------------------- config
@dataclass(frozen=True)
class SASRecConfig:
    """SASRec's architecture, optimisation and early stopping.

    Attributes:
        dim: d, the embedding and hidden size (divisible by ``heads``).
        layers: self-attention blocks.
        heads: attention heads.
        dropout: rate of the embedding, attention and feed-forward dropouts, in [0, 1).
        max_len: the most recent items a user's window holds (training and ranking).
        lr: Adam learning rate.
        batch_size: users per training step.
        loss: ``"ce"`` (full softmax over all items) or ``"bce"`` (the paper's one
            sampled negative per position).
        max_epochs: epoch cap.
        eval_every: validate every this many epochs.
        patience: evaluations without gain before stopping.
        select: the validation metric early stopping maximises (a leave-one-out key).
    """

    dim: int = 64
    layers: int = 2
    heads: int = 2
    dropout: float = 0.2
    max_len: int = 50
    lr: float = 1e-3
    batch_size: int = 128
    loss: str = "ce"
    max_epochs: int = 200
    eval_every: int = 1
    patience: int = 5
    select: str = "ndcg@10"

    def __post_init__(self) -> None:
        for key in ("dim", "layers", "heads", "max_len", "batch_size", "max_epochs",
                    "eval_every", "patience"):
            value = getattr(self, key)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"SASRecConfig.{key} = {value!r}: must be an integer >= 1; "
                                 f"set a positive integer")
        if self.dim % self.heads:
            raise ValueError(f"SASRecConfig.heads = {self.heads} does not divide dim = "
                             f"{self.dim}; choose heads among the divisors of dim")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"SASRecConfig.dropout = {self.dropout!r}: must be in [0, 1); "
                             f"set e.g. 0.2")
        if not (isinstance(self.lr, (int, float)) and math.isfinite(self.lr) and self.lr > 0):
            raise ValueError(f"SASRecConfig.lr = {self.lr!r}: must be a finite number > 0; "
                             f"set e.g. 1e-3")
        if self.loss not in LOSSES:
            raise ValueError(f"SASRecConfig.loss = {self.loss!r}: unknown loss; choose one "
                             f"of {', '.join(LOSSES)}")
        if self.select not in METRIC_KEYS:
            raise ValueError(f"SASRecConfig.select = {self.select!r}: not a leave-one-out "
                             f"metric; choose one of {', '.join(METRIC_KEYS)}")


# ------------------------------------------------------------------------------ model
class CausalBlock(nn.Module):
    """One pre-norm self-attention block (shapes [B, L, d] -> [B, L, d]):

        a = x + Dropout(MHA(LN_1(x), allowed))
        y = a + Dropout(W_2 Dropout(ReLU(W_1 LN_2(a) + b_1)) + b_2)
    """

    def __init__(self, dim: int, heads: int, dropout: float) -> None:
        super().__init__()
        self.heads, self.dropout = heads, dropout
        self.norm1, self.norm2 = nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.qkv = nn.Linear(dim, 3 * dim)
        self.out = nn.Linear(dim, dim)
        self.ffn = nn.Sequential(nn.Linear(dim, dim), nn.ReLU(), nn.Dropout(dropout),
                                 nn.Linear(dim, dim))
        self.drop = nn.Dropout(dropout)

    def attend(self, x: Tensor, allowed: Tensor) -> Tensor:
        """Multi-head attention of ``x`` [B, L, d] where ``allowed`` [B, 1, L, L] (bool,
        query x key) says which keys each query sees: softmax(Q Kᵀ / sqrt(d_h)) V per
        head, heads concatenated and projected -> [B, L, d]."""
        b, n, d = x.shape
        q, k, v = (t.view(b, n, self.heads, d // self.heads).transpose(1, 2)
                   for t in self.qkv(x).chunk(3, dim=-1))               # [B, H, L, d_h]
        att = F.scaled_dot_product_attention(
            q, k, v, attn_mask=allowed, dropout_p=self.dropout if self.training else 0.0)
        return self.out(att.transpose(1, 2).reshape(b, n, d))

    def forward(self, x: Tensor, allowed: Tensor) -> Tensor:
        x = x + self.drop(self.attend(self.norm1(x), allowed))
        return x + self.drop(self.ffn(self.norm2(x)))


class SASRec(nn.Module):
    """Self-attentive sequential recommendation (Kang & McAuley, 2018).

    Args:
        n_items: I; inputs use ids 1..I for items and 0 for padding.
        config: the architecture (dim, layers, heads, dropout, max_len).

    Attributes:
        item_emb: E [I + 1, d], row 0 the padding (shared by input and output).
        pos_emb: P [max_len, d].
    """

    def __init__(self, n_items: int, config: SASRecConfig) -> None:
        super().__init__()
        if n_items < 1:
            raise ValueError(f"SASRec needs >= 1 item, got {n_items}")
        self.n_items, self.dim, self.max_len = int(n_items), config.dim, config.max_len
        self.item_emb = nn.Embedding(n_items + 1, config.dim, padding_idx=0)
        self.pos_emb = nn.Embedding(config.max_len, config.dim)
        nn.init.normal_(self.item_emb.weight, std=0.02)
        nn.init.normal_(self.pos_emb.weight, std=0.02)
        with torch.no_grad():
            self.item_emb.weight[0].zero_()
        self.emb_drop = nn.Dropout(config.dropout)
        self.blocks = nn.ModuleList(CausalBlock(config.dim, config.heads, config.dropout)
                                    for _ in range(config.layers))
        self.final_norm = nn.LayerNorm(config.dim)

    def forward(self, seqs: Tensor) -> Tensor:
        """Hidden states h [B, L, d] of shifted item ids ``seqs`` [B, L] int64 (0 = pad,
        L <= max_len); h_t depends on the real items at positions <= t only; padding
        cells are 0."""
        if seqs.dim() != 2 or seqs.shape[1] > self.max_len:
            raise ValueError(f"seqs must be [B, L] with L <= max_len = {self.max_len}, got "
                             f"{tuple(seqs.shape)}; keep the most recent max_len items")
        real = seqs > 0                                                    # [B, L]
        keep = real.unsqueeze(-1).to(self.item_emb.weight.dtype)           # [B, L, 1]
        positions = (real.long().cumsum(1) - 1).clamp(min=0)               # p_t [B, L]
        x = self.item_emb(seqs) * math.sqrt(self.dim) + self.pos_emb(positions)
        x = self.emb_drop(x) * keep
        allowed = self.attention_mask(real)
        for block in self.blocks:
            x = block(x, allowed) * keep
        return self.final_norm(x) * keep

    @staticmethod
    def attention_mask(real: Tensor) -> Tensor:
        """Which keys each query sees, bool [B, 1, L, L] from ``real`` [B, L]: the real
        positions j <= t, and always t itself (so no row is empty)."""
        n = real.shape[1]
        causal = torch.ones(n, n, dtype=torch.bool, device=real.device).tril()
        eye = torch.eye(n, dtype=torch.bool, device=real.device)
        return ((causal & real[:, None, :]) | eye).unsqueeze(1)

    def item_scores(self, hidden: Tensor) -> Tensor:
        """Scores of every item, ``hidden`` [..., d] · E[1:]ᵀ -> [..., I]."""
        return hidden @ self.item_emb.weight[1:].T

    def score_last(self, seqs: Tensor) -> Tensor:
        """Scores [B, I] of the next item after left-padded ``seqs`` [B, L]: the last
        position's hidden state against every item embedding."""
        return self.item_scores(self.forward(seqs)[:, -1])


# ------------------------------------------------------------------------ batching
def pad_left(seqs: Sequence[np.ndarray], width: int) -> np.ndarray:
    """Right-aligned, left-padded rows of shifted ids (item + 1, 0 = pad): int64
    [len(seqs), width]; longer sequences keep their most recent ``width`` items."""
    out = np.zeros((len(seqs), width), dtype=np.int64)
    for row, seq in enumerate(seqs):
        tail = np.asarray(seq, dtype=np.int64)[len(seq) - min(len(seq), width):]
        if len(tail):
            out[row, width - len(tail):] = tail + 1
    return out


def training_windows(split: LeaveOneOut, max_len: int) -> tuple[np.ndarray, list[np.ndarray]]:
    """Per user with >= 2 items before its validation target, the most recent
    ``max_len + 1`` of them: (users [M] int64, windows, each [2..max_len + 1] int64)."""
    histories = split.histories("valid")
    users = np.array([u for u, h in enumerate(histories) if len(h) >= 2], dtype=np.int64)
    if not len(users):
        raise ValueError("no user has 2 or more items before its validation target, so "
                         "SASRec has nothing to train on; use longer sequences")
    return users, [histories[u][-(max_len + 1):] for u in users]


def split_fingerprint(split: LeaveOneOut) -> str:
    """Short hash of a leave-one-out split, so a checkpoint is never resumed on other
    data."""
    h = hashlib.sha256(f"{split.n_users}x{split.n_items}".encode())
    h.update(np.array([len(s) for s in split.sequences], dtype=np.int64).tobytes())
    for seq in split.sequences:
        h.update(np.asarray(seq, dtype=np.int64).tobytes())
    return h.hexdigest()[:16]


# ------------------------------------------------------------------------- ranking
def top_k_stable(scores: np.ndarray, k: int) -> np.ndarray:
    """The ``k`` best columns per row of ``scores`` [B, I], ordered by descending score
    and ascending column id on ties (= a stable sort of -score): int64 [B, min(k, I)].

    Exact and without a full sort: the k-th best score t of each row bounds the
    candidates (every column with score >= t), which alone are sorted."""
    scores = np.asarray(scores)
    n_rows, n_cols = scores.shape
    k = min(int(k), n_cols)
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    if n_rows == 0:
        return np.zeros((0, k), dtype=np.int64)
    if k == n_cols:
        return np.argsort(-scores, axis=1, kind="stable").astype(np.int64)
    kth = -np.partition(-scores, k - 1, axis=1)[:, k - 1]                 # [B]
    rows, cols = np.nonzero(scores >= kth[:, None])                       # row-major
    order = np.lexsort((cols, -scores[rows, cols], rows))
    starts = np.concatenate([[0], np.cumsum(np.bincount(rows, minlength=n_rows))[:-1]])
    return cols[order][starts[:, None] + np.arange(k)].astype(np.int64)


def _device_of(module: nn.Module) -> torch.device:
    return next(module.parameters()).device


def rank_loo(model: SASRec, split: LeaveOneOut, which: str, k: int = 10,
             max_len: int | None = None, batch_size: int = EVAL_BATCH) -> np.ndarray:
    """Top-``k`` item ids per user (int64 [U, min(k, I)], best first) after the history of
    split ``which`` (``"valid"``/``"test"``), at most ``max_len`` (default: the model's)
    most recent items; all items ranked, history not masked, ties by item id. Runs in eval
    mode (dropout off) and restores the model's mode."""
    max_len = model.max_len if max_len is None else min(int(max_len), model.max_len)
    histories = split.histories(which, max_len)
    device, was_training = _device_of(model), model.training
    model.eval()
    blocks = []
    try:
        with torch.no_grad():
            for lo in range(0, len(histories), batch_size):
                seqs = torch.from_numpy(pad_left(histories[lo:lo + batch_size], max_len))
                scores = model.score_last(seqs.to(device)).float().cpu().numpy()
                blocks.append(top_k_stable(scores, k))
    finally:
        model.train(was_training)
    return np.concatenate(blocks) if blocks else np.zeros((0, min(k, split.n_items)), np.int64)


def evaluate_sasrec(model: SASRec, split: LeaveOneOut, which: str,
                    max_len: int | None = None) -> dict[str, float]:
    """HR@{1, 5, 10} and NDCG@{5, 10} of ``model`` on split ``which`` (``loo_metrics``)."""
    top = rank_loo(model, split, which, k=max(*HR_KS, *NDCG_KS), max_len=max_len)
    return loo_metrics(top, split.targets(which), split.n_items)


# ------------------------------------------------------------------------ training
def sequence_loss(model: SASRec, inputs: Tensor, targets: Tensor, loss: str,
                  negatives: Tensor | None = None) -> Tensor:
    """Mean teacher-forcing loss over the non-pad targets.

    Args:
        inputs: [B, L] shifted ids (0 = pad), ``seq[:-1]`` left-padded.
        targets: [B, L] shifted ids of the next items, ``seq[1:]`` (0 = no target).
        loss: ``"ce"`` (softmax over all I items) or ``"bce"`` (needs ``negatives``).
        negatives: [B, L] shifted ids of one sampled negative per position (``"bce"``).
    """
    hidden = model(inputs)                                                 # [B, L, d]
    real = targets > 0
    h = hidden[real]                                                       # [N, d]
    if loss == "ce":
        return F.cross_entropy(model.item_scores(h), targets[real] - 1)
    if negatives is None:
        raise ValueError("the bce loss needs one negative per position")
    pos = (h * model.item_emb(targets[real])).sum(-1)                      # [N]
    neg = (h * model.item_emb(negatives[real])).sum(-1)                    # [N]
    return (F.softplus(-pos) + F.softplus(neg)).mean()


def _epoch_fn(model: SASRec, optimizer: torch.optim.Optimizer, split: LeaveOneOut,
              config: SASRecConfig, rng: np.random.Generator, device: torch.device,
              callback: Callable[[int], None] | None) -> Callable[[int], dict[str, float]]:
    """One training epoch over every user's window, in shuffled batches, as a callable
    ``epoch -> {"loss": mean batch loss}`` (randomness from ``rng`` and torch's RNG)."""
    users, windows = training_windows(split, config.max_len)
    sampler = BPRSampler(split.train_pairs(), split.n_items) if config.loss == "bce" else None

    def train_epoch(epoch: int) -> dict[str, float]:
        total, steps = 0.0, 0
        order = rng.permutation(len(users))
        for lo in range(0, len(order), config.batch_size):
            idx = order[lo:lo + config.batch_size]
            width = max(len(windows[i]) for i in idx) - 1
            inputs = pad_left([windows[i][:-1] for i in idx], width)
            targets = pad_left([windows[i][1:] for i in idx], width)
            negatives = None
            if sampler is not None:
                rows = np.repeat(users[idx], width)
                negatives = torch.from_numpy(
                    (sampler.negatives(rows, rng) + 1).reshape(len(idx), width)).to(device)
            loss = sequence_loss(model, torch.from_numpy(inputs).to(device),
                                 torch.from_numpy(targets).to(device), config.loss, negatives)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            total, steps = total + float(loss.detach()), steps + 1
        if callback is not None:
            callback(epoch)
        return {"loss": total / max(steps, 1)}

    return train_epoch


def train_sasrec(
    split: LeaveOneOut,
    config: SASRecConfig,
    seed: int,
    *,
    checkpoint_path: Path | None = None,
    resume: bool = False,
    progress: bool = False,
    device: torch.device | str = "cpu",
    callback: Callable[[int], None] | None = None,
) -> tuple[SASRec, FitLog]:
    """Train SASRec on ``split`` (each user's history before its validation target) with
    early stopping on validation ``config.select``; return the model with its best state
    loaded (eval mode, on ``device``) and the run's log.

    ``checkpoint_path``/``resume``: save the whole run state at each evaluation / continue
    from it (the config, seed and split must match). ``callback(epoch)`` runs after each
    epoch's training steps, before its evaluation (raising from it interrupts the run, as
    a crash would).
    """
    rng = seed_everything(seed)
    device = torch.device(device)
    model = SASRec(split.n_items, config).to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=config.lr, betas=ADAM_BETAS)
    rule = StopRule(max_epochs=config.max_epochs, eval_every=config.eval_every,
                    patience=config.patience, select=config.select)
    log = fit_early_stopping(
        model, optimizer, _epoch_fn(model, optimizer, split, config, rng, device, callback),
        lambda: evaluate_sasrec(model, split, "valid"), rule, rng,
        checkpoint_path=checkpoint_path, resume=resume,
        run_params={"model": "sasrec", **asdict(config), "seed": seed,
                    "data": split_fingerprint(split)},
        progress=progress, desc="sasrec")
    return model, log


# --------------------------------------------------------------------- CF backbones
def loo_dataset(split: LeaveOneOut, name: str) -> RecDataset:
    """The split as a :class:`RecDataset` for the study's CF loop: train = the distinct
    (user, item) pairs before each validation target, valid / test = one (user, target)
    pair per user; side tables hold only ``raw_id`` (the source ids). Not
    :meth:`RecDataset.validate`-d: a repeated item may be both history and target."""
    users = np.arange(split.n_users, dtype=np.int64)
    return RecDataset(
        name=name, n_users=split.n_users, n_items=split.n_items,
        train=np.unique(split.train_pairs(), axis=0),
        valid=np.column_stack([users, split.targets("valid")]),
        test=np.column_stack([users, split.targets("test")]),
        users=pd.DataFrame({"raw_id": split.user_ids}),
        items=pd.DataFrame({"raw_id": split.item_ids}),
        item_noun="item", meta={"protocol": "leave_one_out"})


def rank_embeddings(user_emb: Tensor, item_emb: Tensor, k: int = 10,
                    batch_size: int = EVAL_BATCH) -> np.ndarray:
    """Top-``k`` items per user by dot product, nothing masked, ties by item id:
    ``user_emb`` [U, d], ``item_emb`` [I, d] -> int64 [U, min(k, I)]."""
    blocks = []
    with torch.no_grad():
        for lo in range(0, len(user_emb), batch_size):
            scores = (user_emb[lo:lo + batch_size] @ item_emb.T).float().cpu().numpy()
            blocks.append(top_k_stable(scores, k))
    return np.concatenate(blocks) if blocks else np.zeros((0, min(k, len(item_emb))), np.int64)


def train_cf_loo(
    split: LeaveOneOut,
    backbone: str,
    params: TrainCFParams,
    seed: int,
    *,
    name: str = "loo",
    device: torch.device | str = "cpu",
    checkpoint_path: Path | None = None,
    resume: bool = False,
    progress: bool = False,
) -> dict[str, Any]:
    """Train CF ``backbone`` (a models-registry key, e.g. ``"mf"``, ``"lightgcn"``) on the
    leave-one-out ``split`` with the study's loop and early stopping (validation
    recall@20, = HR@20 with one target; that pass masks training items, as every study
    run), then rank all items for every user with the best state, **unmasked**.

    ``params`` gives everything else (dim, layers, lr, reg, batch size, epochs, patience,
    its ``backbone_overrides``); its ``backbone`` and ``seed`` are replaced by the
    arguments. Returns the test ``loo_metrics`` (hr@1/5/10, ndcg@5/10) and ``backbone``,
    ``seed``, ``stopped_by``, ``best_epoch``, ``epochs_run``, ``valid`` (unmasked
    leave-one-out metrics of the best state on validation), ``history`` (one row per
    epoch), ``params`` (the resolved train_cf values) and ``embeddings`` (the best state's
    ``user`` [U, d] and ``item`` [I, d] arrays, e.g. Semantic Convergence's input) and
    ``state`` (the best state's ``state_dict``, on the CPU).
    """
    p = build(TrainCFParams, {**{f.name: getattr(params, f.name) for f in fields(params)},
                              "backbone": backbone, "seed": seed}, "train_cf").resolved()
    ds = loo_dataset(split, name)
    rng = seed_everything(p.seed)
    model = make_backbone(p.backbone, ds.n_users, ds.n_items, p, ds.matrix("train"))
    res: FitResult = fit(model, ds, fit_config(p), rng, device=device,
                         checkpoint_path=checkpoint_path, resume=resume,
                         run_params={**_run_params(p, ds), "protocol": "leave_one_out"},
                         progress=progress)
    model.eval()
    user_emb, item_emb = model.embeddings_for_eval()
    top = rank_embeddings(user_emb, item_emb, k=max(*HR_KS, *NDCG_KS))
    metrics = {s: loo_metrics(top, split.targets(s), split.n_items) for s in SPLITS}
    return {**metrics["test"], "backbone": p.backbone, "seed": p.seed,
            "stopped_by": res.stopped_by, "best_epoch": res.best_epoch,
            "epochs_run": res.epochs_run, "valid": metrics["valid"],
            "history": res.history, "params": asdict(p),
            "embeddings": {"user": user_emb.detach().cpu().numpy(),
                           "item": item_emb.detach().cpu().numpy()},
            "state": {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}}
