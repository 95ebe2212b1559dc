"""Early-stopped training for the generative pipeline's models (SASRec, RQ-VAE, the
language-model backends).

The study's loop (:func:`facelib.train.loop.fit`) is built around BPR triples over a
:class:`~facelib.data.RecDataset`; the generative models train on other units (sequences,
item embeddings, instruction examples), so this driver takes the epoch as a callable and
keeps only what every run shares: evaluate every ``eval_every`` epochs, keep the best state
by the ``select`` key, stop after ``patience`` evaluations without gain
(``stopped_by: early_stopping``) or at ``max_epochs`` (``stopped_by: cap``), end with the
best state loaded, and checkpoint everything (module, optimiser, counters, history, every
random generator) at each evaluation so that an interrupted run resumes to the same result.
"""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from facelib.train.checkpoint import (
    check_same_run,
    load_checkpoint,
    restore_rng,
    rng_state,
    save_checkpoint,
)

STOPPED_BY = ("early_stopping", "cap")


@dataclass(frozen=True)
class StopRule:
    """When to evaluate and when to stop.

    Attributes:
        max_epochs: the epoch cap (a run that reaches it reports ``stopped_by: cap``).
        eval_every: evaluate every this many epochs (and at the cap).
        patience: evaluations without gain before stopping (>= 1).
        select: the validation key to maximise; a leading ``-`` minimises it
            (``"-loss"``).
        min_delta: a gain must exceed this to count.
        rel_delta: a gain must also exceed this fraction of the best score's magnitude
            (0.005: a loss must fall by more than 0.5% of its best value), so that a loss
            still creeping down by rounding-size steps counts as converged.
    """

    max_epochs: int
    eval_every: int = 1
    patience: int = 3
    select: str = "ndcg@10"
    min_delta: float = 0.0
    rel_delta: float = 0.0

    def __post_init__(self) -> None:
        for key in ("max_epochs", "eval_every", "patience"):
            if getattr(self, key) < 1:
                raise ValueError(f"StopRule.{key} must be >= 1, got {getattr(self, key)}")
        for key in ("min_delta", "rel_delta"):
            if getattr(self, key) < 0:
                raise ValueError(f"StopRule.{key} must be >= 0, got {getattr(self, key)}")

    def score(self, metrics: dict[str, float]) -> float:
        """The (higher is better) selection score of a validation dict."""
        key = self.select.lstrip("-")
        if key not in metrics:
            raise KeyError(f"select key {key!r} is not among the validation metrics "
                           f"{sorted(metrics)}; choose one of them")
        value = float(metrics[key])
        return -value if self.select.startswith("-") else value

    def improves(self, score: float, best: float) -> bool:
        """Whether ``score`` beats ``best`` by more than ``min_delta`` and ``rel_delta``."""
        if not math.isfinite(best):
            return True
        return score > best + self.min_delta + self.rel_delta * abs(best)


@dataclass
class FitLog:
    """How a run went: per-evaluation history, the best evaluation, how it ended."""

    history: list[dict[str, Any]] = field(default_factory=list)
    best_epoch: int = 0
    best: dict[str, float] = field(default_factory=dict)
    best_score: float = -math.inf
    bad_evals: int = 0
    epoch: int = 0
    seconds: float = 0.0
    stopped_by: str = ""

    def summary(self) -> dict[str, Any]:
        """The JSON-ready fields a metrics file records."""
        return {"best_epoch": self.best_epoch, "epochs_run": self.epoch,
                "stopped_by": self.stopped_by, "train_seconds": round(self.seconds, 2),
                "valid": self.best}


def fit_early_stopping(
    module: nn.Module,
    optimizer: torch.optim.Optimizer,
    train_epoch: Callable[[int], dict[str, float]],
    evaluate: Callable[[], dict[str, float]],
    rule: StopRule,
    rng: np.random.Generator,
    *,
    checkpoint_path: Path | None = None,
    resume: bool = False,
    run_params: dict[str, Any] | None = None,
    progress: bool = False,
    desc: str = "train",
) -> FitLog:
    """Train ``module`` with ``train_epoch(epoch) -> {loss: ...}`` (epochs 1-based, drawing
    randomness only from ``rng`` and torch's generator) until ``rule`` stops it; returns the
    log with the best state loaded into ``module``.

    With ``checkpoint_path`` the whole state is saved at each evaluation; with ``resume``
    a run continues from that checkpoint (its ``run_params`` must match).
    """
    log = FitLog()
    best_state = copy.deepcopy(module.state_dict())
    params = dict(run_params or {}, stop_rule=asdict(rule))
    if resume and checkpoint_path is not None and Path(checkpoint_path).is_file():
        state = load_checkpoint(checkpoint_path)
        check_same_run(state["run_params"], params, Path(checkpoint_path))
        module.load_state_dict(state["module"])
        optimizer.load_state_dict(state["optimizer"])
        best_state = state["best_state"]
        log = FitLog(**state["log"])
        restore_rng(state["rng"], rng)
    bar = None
    if progress:
        from tqdm.auto import tqdm
        bar = tqdm(total=rule.max_epochs, initial=log.epoch, desc=desc, leave=False)
    while not log.stopped_by:
        start = time.perf_counter()
        epoch = log.epoch + 1
        module.train()
        row: dict[str, Any] = {"epoch": epoch, **train_epoch(epoch)}
        if not all(math.isfinite(v) for v in row.values() if isinstance(v, float)):
            raise FloatingPointError(f"{desc}: a training loss became NaN/inf at epoch "
                                     f"{epoch} ({row}); lower the learning rate")
        log.epoch = epoch
        if epoch % rule.eval_every == 0 or epoch == rule.max_epochs:
            module.eval()
            with torch.no_grad():
                valid = {k: float(v) for k, v in evaluate().items()}
            row.update({f"valid_{k}": v for k, v in valid.items()})
            score = rule.score(valid)
            if rule.improves(score, log.best_score):
                log.best_score, log.best_epoch, log.best = score, epoch, valid
                log.bad_evals = 0
                best_state = copy.deepcopy(module.state_dict())
            else:
                log.bad_evals += 1
            if log.bad_evals >= rule.patience:
                log.stopped_by = "early_stopping"
            elif epoch >= rule.max_epochs:
                log.stopped_by = "cap"
        log.history.append(row)
        log.seconds += time.perf_counter() - start
        if bar is not None:
            bar.update(1)
            bar.set_postfix({k: f"{v:.4g}" for k, v in row.items() if k != "epoch"})
        evaluated = "valid_" + rule.select.lstrip("-") in row
        if checkpoint_path is not None and (log.stopped_by or evaluated):
            save_checkpoint({"module": module.state_dict(), "optimizer": optimizer.state_dict(),
                             "best_state": best_state, "log": asdict(log),
                             "rng": rng_state(rng), "run_params": params}, checkpoint_path)
    if bar is not None:
        bar.close()
    module.load_state_dict(best_state)
    module.eval()
    return log
