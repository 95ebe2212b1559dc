"""The training loop shared by the base CF models and the alignment plug-ins.

Per epoch (as the reference): every training pair (u, i⁺) gets one fresh uniform negative,
the triples are shuffled and cut into batches; each step minimises

    L = Σ backbone losses (BPR + e.g. SimGCL's CL) + Σ plug-in losses (FACE, RLMRec, ...)

with Adam: the backbone's parameters at ``lr · base_lr_scale`` with weight decay ``2·reg``
(the reference's L2), the plug-ins' at ``lr`` without decay. Every ``eval_every`` epochs
(and at the last) the model is ranked on validation; when Recall@20 improves the state is
deep-copied, otherwise the patience counter grows and training stops at ``patience``
evaluations without gain. The checkpoint is written at every evaluation; the test split is
ranked once, with the best state, at the end.
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import nn

from facelib.data import RecDataset
from facelib.eval import KS, Evaluator
from facelib.io import atomic_file
from facelib.models.base import Backbone
from facelib.models.sampling import BPRSampler
from facelib.train.checkpoint import (
    CheckpointError,
    check_same_run,
    load_checkpoint,
    restore_rng,
    rng_state,
    save_checkpoint,
)

SELECT = "recall@20"  # model selection metric on validation


class TrainingError(RuntimeError):
    """Training cannot go on (e.g. the loss became NaN/inf)."""


@dataclass(frozen=True)
class FitConfig:
    """Optimisation and early-stopping settings of one :func:`fit` call."""

    lr: float = 1e-3
    reg: float = 1e-6               # backbone weight decay 2·reg
    batch_size: int = 4096
    max_epochs: int = 100
    eval_every: int = 1
    patience: int = 10              # evaluations without gain before stopping
    base_lr_scale: float = 1.0      # backbone lr = lr · base_lr_scale (FACE map/align: 0.1)
    eval_batch_size: int = 2048

    def __post_init__(self) -> None:
        for key in ("batch_size", "max_epochs", "eval_every", "patience", "eval_batch_size"):
            if getattr(self, key) < 1:
                raise ValueError(f"FitConfig.{key} must be >= 1, got {getattr(self, key)}")
        if self.lr <= 0 or self.reg < 0 or self.base_lr_scale < 0:
            raise ValueError("FitConfig needs lr > 0, reg >= 0 and base_lr_scale >= 0")


@dataclass
class FitResult:
    """What a finished :func:`fit` returns.

    ``best_valid`` / ``test``: metrics @5/10/20 of the best-validation state; ``history``:
    one row per epoch (epoch, loss components, valid recall/ndcg@20 or NaN, seconds).
    """

    best_epoch: int
    best_valid: dict[str, float]
    test: dict[str, float]
    epochs_run: int
    stopped_early: bool
    seconds_per_epoch: float
    eval_seconds: float
    history: list[dict[str, Any]] = field(default_factory=list)


EpochCallback = Callable[[dict[str, Any]], None]


def snapshot(modules: Sequence[nn.Module]) -> list[dict[str, torch.Tensor]]:
    """Deep copies of the modules' state dicts (the best-validation state)."""
    return [{k: v.detach().clone() for k, v in m.state_dict().items()} for m in modules]


def _load(modules: Sequence[nn.Module], states: list[dict[str, torch.Tensor]]) -> None:
    for m, s in zip(modules, states, strict=True):
        m.load_state_dict(s)


def make_optimizer(model: Backbone, regularizers: Sequence[nn.Module],
                   cfg: FitConfig) -> torch.optim.Adam:
    """Adam with the backbone group (lr · base_lr_scale, decay 2·reg) and one group for the
    plug-ins' trainable parameters (lr, no decay)."""
    groups: list[dict[str, Any]] = [{"params": [p for p in model.parameters() if p.requires_grad],
                                     "lr": cfg.lr * cfg.base_lr_scale,
                                     "weight_decay": 2.0 * cfg.reg}]
    plug = [p for r in regularizers for p in r.parameters() if p.requires_grad]
    if plug:
        groups.append({"params": plug, "lr": cfg.lr, "weight_decay": 0.0})
    return torch.optim.Adam(groups)


def write_log(history: list[dict[str, Any]], path: Path) -> None:
    """The per-epoch log as CSV, atomically (DVC plots read it)."""
    with atomic_file(path) as fh:
        pd.DataFrame(history).to_csv(fh, index=False, float_format="%.6g")


def train_epoch(model: Backbone, regularizers: Sequence[nn.Module],
                optimizer: torch.optim.Optimizer, sampler: BPRSampler, rng: np.random.Generator,
                batch_size: int, device: torch.device, epoch: int,
                max_steps: int = 0) -> dict[str, float]:
    """One pass over the training pairs with fresh negatives (only the first ``max_steps``
    batches when > 0: the CPU bound of the FACE stages); returns the mean of every loss
    term per batch, ``{"bpr": ..., "cl": ..., <plug-in terms>}``. A NaN/inf mean stops
    training with a one-line error naming the epoch."""
    sums: dict[str, torch.Tensor] = {}
    n_batches = 0
    for users, pos, neg in sampler.batches(rng, batch_size, device):
        if max_steps and n_batches >= max_steps:
            break
        out = model.forward_batch(users, pos, neg)
        losses = dict(out.losses)
        for r in regularizers:
            for key, value in r.losses(out, users, pos, neg).items():
                if key in losses:
                    raise TrainingError(f"plug-in {type(r).__name__} returns loss {key!r} "
                                        f"that already exists; rename it")
                losses[key] = value
        loss = sum(losses.values())
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        for key, value in losses.items():  # summed as tensors: no device sync per batch
            sums[key] = sums.get(key, 0.0) + value.detach()
        n_batches += 1
    means = {k: float(v) / n_batches for k, v in sums.items()}
    if not all(math.isfinite(v) for v in means.values()):
        bad = ", ".join(f"{k}={v:.4g}" for k, v in means.items())
        raise TrainingError(f"loss became non-finite in epoch {epoch} ({bad}); lower lr, "
                            f"check the data and the plug-in losses")
    return means


def fit(
    model: Backbone,
    ds: RecDataset,
    cfg: FitConfig,
    rng: np.random.Generator,
    *,
    regularizers: Sequence[nn.Module] = (),
    device: torch.device | str = "cpu",
    checkpoint_path: Path | None = None,
    log_path: Path | None = None,
    resume: bool = False,
    run_params: dict[str, Any] | None = None,
    progress: bool = False,
    callback: EpochCallback | None = None,
) -> FitResult:
    """Train ``model`` (plus optional plug-ins with a ``losses(out, users, pos, neg)``
    method, see :class:`facelib.models.base.Regularizer`) on ``ds`` with BPR, early stopping
    on validation Recall@20, and return test metrics of the best-validation state, which is
    left loaded in ``model``.

    ``rng`` draws negatives and batch order (torch's global RNG drives dropout and noise).
    With ``checkpoint_path`` the full training state is saved at every evaluation; with
    ``resume`` it is loaded first (the stored ``run_params`` must equal the current ones).
    ``callback(row)`` runs after every epoch with that epoch's log row (raising from it
    interrupts training, as a crash would).
    """
    device = torch.device(device)
    regularizers = list(regularizers)
    modules: list[nn.Module] = [model, *regularizers]
    for m in modules:
        m.to(device)
    run_params = dict(run_params if run_params is not None else dataclasses.asdict(cfg))
    train_m = ds.matrix("train")
    sampler = BPRSampler(ds.train, ds.n_items)
    valid_eval = Evaluator(train_m, ds.matrix("valid"), KS, cfg.eval_batch_size, device)
    optimizer = make_optimizer(model, regularizers, cfg)

    start_epoch, best_metric, best_epoch, bad_evals = 1, -math.inf, 0, 0
    best_valid: dict[str, float] = {}
    best_state = snapshot(modules)
    history: list[dict[str, Any]] = []
    finished = False
    if resume:
        if checkpoint_path is None:
            raise CheckpointError("resume requested but no checkpoint path was given")
        ck = load_checkpoint(checkpoint_path, map_location=device)
        check_same_run(ck["run_params"], run_params, checkpoint_path)
        _load(modules, ck["model"])
        optimizer.load_state_dict(ck["optimizer"])
        best_state, best_metric = ck["best_state"], ck["best_metric"]
        best_epoch, bad_evals, best_valid = ck["best_epoch"], ck["bad_evals"], ck["best_valid"]
        history, finished = list(ck["history"]), bool(ck["finished"])
        start_epoch = ck["epoch"] + 1
        restore_rng(ck["rng"], rng)

    def checkpoint(epoch: int, done: bool, **extra: Any) -> None:
        if checkpoint_path is not None:
            state = {"run_params": run_params, "epoch": epoch, "model": snapshot(modules),
                     "optimizer": optimizer.state_dict(), "best_state": best_state,
                     "best_metric": best_metric, "best_epoch": best_epoch,
                     "best_valid": best_valid, "bad_evals": bad_evals, "history": history,
                     "finished": done, "rng": rng_state(rng), **extra}
            save_checkpoint(state, checkpoint_path)
        if log_path is not None:
            write_log(history, log_path)

    bar = None
    if progress and not finished:
        from tqdm.auto import tqdm

        bar = tqdm(total=cfg.max_epochs, initial=start_epoch - 1, desc=f"train {model.name}",
                   unit="epoch")
    epoch = start_epoch - 1
    for epoch in range(start_epoch, cfg.max_epochs + 1):
        if finished:
            break
        for m in modules:
            m.train()
        t0 = time.perf_counter()
        means = train_epoch(model, regularizers, optimizer, sampler, rng, cfg.batch_size,
                            device, epoch)
        total = sum(means.values())
        row: dict[str, Any] = {"epoch": epoch, "loss": total,
                               **{f"loss_{k}": v for k, v in means.items()},
                               "valid_recall@20": math.nan, "valid_ndcg@20": math.nan,
                               "seconds": time.perf_counter() - t0, "eval_seconds": math.nan}
        evaluate_now = epoch % cfg.eval_every == 0 or epoch == cfg.max_epochs
        if evaluate_now:
            for m in modules:
                m.eval()
            t1 = time.perf_counter()
            metrics = valid_eval(model)
            row["eval_seconds"] = time.perf_counter() - t1
            row["valid_recall@20"], row["valid_ndcg@20"] = metrics["recall@20"], metrics["ndcg@20"]
            if metrics[SELECT] > best_metric:
                best_metric, best_epoch, best_valid = metrics[SELECT], epoch, metrics
                best_state, bad_evals = snapshot(modules), 0
            else:
                bad_evals += 1
        history.append(row)
        if evaluate_now:
            finished = bad_evals >= cfg.patience or epoch == cfg.max_epochs
            checkpoint(epoch, finished)
        if bar is not None:
            bar.update(1)
            bar.set_postfix(loss=f"{total:.4f}", best=f"{best_metric:.4f}@{best_epoch}")
        if callback is not None:
            callback(row)
        if finished:
            break
    if bar is not None:
        bar.close()

    # final: best state, re-validate (sanity), test once
    _load(modules, best_state)
    for m in modules:
        m.eval()
    t1 = time.perf_counter()
    test_eval = Evaluator(train_m, ds.matrix("test"), KS, cfg.eval_batch_size, device)
    test = test_eval(model)
    eval_seconds = time.perf_counter() - t1
    # the final file: model = best state (nothing resumes from a finished run) + test
    checkpoint(epoch, True, test=test)
    train_secs = [r["seconds"] for r in history]
    return FitResult(
        best_epoch=best_epoch, best_valid=best_valid, test=test, epochs_run=len(history),
        stopped_early=bad_evals >= cfg.patience,
        seconds_per_epoch=float(np.mean(train_secs)) if train_secs else 0.0,
        eval_seconds=eval_seconds, history=history,
    )

