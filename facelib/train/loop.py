"""The one training loop: base CF models, alignment plug-ins, and their phases.

A run is a sequence of :class:`Phase` objects (``train_cf``: one phase; FACE: ``map`` then
``align``; its control run: the same two phases with no plug-in). Per epoch of a phase, as
the reference: every training pair (u, i⁺) gets one fresh uniform negative, the triples are
shuffled and cut into batches (a phase may use only the first ``steps_per_epoch`` of them,
e.g. one BPR batch per alignment batch of entities); each step minimises

    L = Σ backbone losses (BPR + e.g. SimGCL's CL) + Σ plug-in losses (FACE, RLMRec, ...)

with Adam: the backbone's parameters at ``lr · base_lr_scale`` with weight decay ``2·reg``
(the reference's L2), the plug-ins' at ``lr`` without decay; a fresh optimiser per phase.
Every ``eval_every`` epochs (and at the phase's last) the model is ranked on validation and
the plug-ins add their own signals (:meth:`Regularizer.validation_metrics`); when the
phase's ``select`` key improves the state is deep-copied, otherwise the patience counter
grows and the phase stops at ``patience`` evaluations without gain (``stopped_by:
early_stopping``) or at ``max_epochs`` (``stopped_by: cap``). A phase ends with its best
state loaded and the test split ranked once with it; the next phase starts from there.

The whole state (modules, optimiser, best state, counters, history, finished phases and
every random generator) is checkpointed at each evaluation, so an interrupted run resumes
to exactly the result of an uninterrupted one.
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
from facelib.eval import KS, Evaluator, PerUserMetrics
from facelib.io import atomic_file
from facelib.models.base import Backbone, Regularizer
from facelib.models.sampling import BPRSampler
from facelib.train.checkpoint import (
    CheckpointError,
    check_same_run,
    load_checkpoint,
    restore_rng,
    rng_state,
    save_checkpoint,
)

SELECT = "recall@20"  # the reference's model-selection metric on validation
STOPPED_BY = ("early_stopping", "cap")


class TrainingError(RuntimeError):
    """Training cannot go on (e.g. the loss became NaN/inf)."""


@dataclass(frozen=True)
class FitConfig:
    """Optimisation and early-stopping settings shared by every phase of a run."""

    lr: float
    reg: float                      # backbone weight decay 2·reg
    batch_size: int
    max_epochs: int                 # epoch cap of the default single phase
    eval_every: int
    patience: int                   # evaluations without gain before stopping
    base_lr_scale: float = 1.0      # backbone lr = lr · base_lr_scale (FACE map/align: 0.1)
    eval_batch_size: int = 2048

    def __post_init__(self) -> None:
        for key in ("batch_size", "max_epochs", "eval_every", "patience", "eval_batch_size"):
            if getattr(self, key) < 1:
                raise ValueError(f"FitConfig.{key} must be >= 1, got {getattr(self, key)}")
        if self.lr <= 0 or self.reg < 0 or self.base_lr_scale < 0:
            raise ValueError("FitConfig needs lr > 0, reg >= 0 and base_lr_scale >= 0")


@dataclass(frozen=True)
class Phase:
    """One early-stopped schedule of a run.

    Attributes:
        name: e.g. ``"train"``, ``"map"``, ``"align"`` (history rows carry it).
        max_epochs: the phase's epoch cap.
        regularizers: plug-ins whose losses join the backbone's in this phase.
        steps_per_epoch: at most this many batches of BPR triples per epoch (0: no bound);
            an epoch is a full pass over the training interactions, or the number of steps a
            plug-in's :meth:`Regularizer.on_epoch_start` asks for (an alignment epoch over
            entities), whichever is smaller.
        select: the validation key early stopping watches, higher is better: a ranking
            metric (``"recall@20"``) or a plug-in's validation signal (``"align_mrr"``); a
            leading ``-`` watches a key where lower is better (``"-align_loss"``).
        start: called when the phase starts or resumes, before any state is loaded (e.g.
            FACE switches to its align stage).
        keep_state: keep the phase's best module states in its result (e.g. FACE's map
            stage, whose descriptors and checkpoint are written after the run).
    """

    name: str
    max_epochs: int
    regularizers: tuple[Regularizer, ...] = ()
    steps_per_epoch: int = 0
    select: str = SELECT
    start: Callable[[], None] | None = None
    keep_state: bool = False

    def __post_init__(self) -> None:
        if self.max_epochs < 1 or self.steps_per_epoch < 0:
            raise ValueError(f"phase {self.name}: max_epochs must be >= 1 and "
                             f"steps_per_epoch >= 0")


@dataclass
class PhaseResult:
    """What one finished phase gives: best-validation metrics, test metrics of that state
    (means and per user), how it ended and what it cost."""

    name: str
    best_epoch: int                 # epoch within the phase
    best_valid: dict[str, float]
    test: dict[str, float]
    test_per_user: PerUserMetrics
    epochs_run: int
    steps: int
    stopped_by: str                 # "early_stopping" | "cap"
    seconds: float
    epoch_offset: int               # epochs of the run before this phase
    state: list[dict[str, torch.Tensor]] | None = None  # best module states (keep_state)

    def summary(self) -> dict[str, Any]:
        """JSON-ready summary (no per-user arrays)."""
        return {"best_epoch": self.best_epoch, "epochs_run": self.epochs_run,
                "steps": self.steps, "stopped_by": self.stopped_by,
                "seconds": round(self.seconds, 2), "valid": self.best_valid, "test": self.test}

    def to_state(self) -> dict[str, Any]:
        out = dataclasses.asdict(self)
        out["test_per_user"] = {"users": self.test_per_user.users,
                                "values": self.test_per_user.values}
        return out

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> PhaseResult:
        pu = state["test_per_user"]
        return cls(**{**state, "test_per_user": PerUserMetrics(pu["users"], pu["values"])})


@dataclass
class FitResult:
    """What a finished :func:`fit` returns; the top-level fields are the last phase's.

    ``history``: one row per epoch (epoch, phase, phase_epoch, loss terms, validation
    recall/ndcg@20 and plug-in signals or NaN, seconds).
    """

    phases: list[PhaseResult]
    history: list[dict[str, Any]] = field(default_factory=list)

    @property
    def last(self) -> PhaseResult:
        return self.phases[-1]

    @property
    def best_epoch(self) -> int:
        return self.last.best_epoch

    @property
    def best_valid(self) -> dict[str, float]:
        return self.last.best_valid

    @property
    def test(self) -> dict[str, float]:
        return self.last.test

    @property
    def test_per_user(self) -> PerUserMetrics:
        return self.last.test_per_user

    @property
    def epochs_run(self) -> int:
        return len(self.history)

    @property
    def stopped_by(self) -> str:
        """"cap" when any phase was ended by its cap, else "early_stopping"."""
        return "cap" if any(p.stopped_by == "cap" for p in self.phases) else "early_stopping"

    @property
    def seconds_per_epoch(self) -> float:
        secs = [r["seconds"] for r in self.history]
        return float(np.mean(secs)) if secs else 0.0

    @property
    def eval_seconds(self) -> float:
        """Mean seconds of one validation pass."""
        secs = [r["eval_seconds"] for r in self.history if not math.isnan(r["eval_seconds"])]
        return float(np.mean(secs)) if secs else 0.0

    def phase(self, name: str) -> PhaseResult:
        return next(p for p in self.phases if p.name == name)


EpochCallback = Callable[[dict[str, Any]], None]
DIVERGED = 10.0  # a loss that ends this many times above its minimum has diverged


def warning_flags(history: list[dict[str, Any]]) -> list[str]:
    """``"diverging"`` when a phase's training loss ended ``DIVERGED`` times above its
    lowest value (finite but exploding); the caller adds its own (e.g. below the floor)."""
    flags = []
    phases: dict[str, list[float]] = {}
    for row in history:
        phases.setdefault(row.get("phase", ""), []).append(abs(float(row["loss"])))
    for losses in phases.values():
        if losses and losses[-1] > DIVERGED * max(min(losses), 1e-12):
            flags.append("diverging")
            break
    return flags


def snapshot(modules: Sequence[nn.Module]) -> list[dict[str, torch.Tensor]]:
    """Deep copies of the modules' state dicts (the best-validation state)."""
    return [{k: v.detach().clone() for k, v in m.state_dict().items()} for m in modules]


def load_states(modules: Sequence[nn.Module], states: list[dict[str, torch.Tensor]]) -> None:
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


def train_epoch(model: Backbone, regularizers: Sequence[Regularizer],
                optimizer: torch.optim.Optimizer, sampler: BPRSampler, rng: np.random.Generator,
                batch_size: int, device: torch.device, epoch: int,
                max_steps: int = 0) -> tuple[dict[str, float], int]:
    """One epoch: fresh negatives for every training pair, shuffled, the first
    ``max_steps`` batches (0: all); plug-in hooks around each step. Returns the mean of
    every loss term per batch (``{"bpr": ..., "cl": ..., <plug-in terms>}``) and the steps
    taken. A NaN/inf mean stops training with a one-line error naming the epoch."""
    sums: dict[str, torch.Tensor] = {}
    steps = 0
    for users, pos, neg in sampler.batches(rng, batch_size, device):
        if max_steps and steps >= max_steps:
            break
        ego = None
        for r in regularizers:
            replaced = r.before_forward(model, users, pos, neg)
            if replaced is not None:
                if ego is not None:
                    raise TrainingError("two plug-ins replace the ego embeddings in one step; "
                                        "combine them into one")
                ego = replaced
        out = model.forward_batch(users, pos, neg, ego=ego)
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
        steps += 1
    means = {k: float(v) / max(steps, 1) for k, v in sums.items()}
    if not all(math.isfinite(v) for v in means.values()):
        bad = ", ".join(f"{k}={v:.4g}" for k, v in means.items())
        raise TrainingError(f"loss became non-finite in epoch {epoch} ({bad}); lower lr, "
                            f"check the data and the plug-in losses")
    return means, steps


@dataclass
class _Progress:
    """The mutable state of a run between evaluations (what a checkpoint holds)."""

    phase: int = 0                  # index of the phase in progress
    epoch: int = 0                  # last finished epoch of that phase
    best_metric: float = -math.inf
    best_epoch: int = 0
    best_valid: dict[str, float] = field(default_factory=dict)
    bad_evals: int = 0
    steps: int = 0
    seconds: float = 0.0
    history: list[dict[str, Any]] = field(default_factory=list)
    done: list[dict[str, Any]] = field(default_factory=list)  # PhaseResult.to_state()
    finished: bool = False


def fit(
    model: Backbone,
    ds: RecDataset,
    cfg: FitConfig,
    rng: np.random.Generator,
    *,
    phases: Sequence[Phase] | None = None,
    regularizers: Sequence[Regularizer] = (),
    device: torch.device | str = "cpu",
    checkpoint_path: Path | None = None,
    log_path: Path | None = None,
    resume: bool = False,
    run_params: dict[str, Any] | None = None,
    progress: bool = False,
    callback: EpochCallback | None = None,
) -> FitResult:
    """Train ``model`` through ``phases`` (default: one phase ``"train"`` of
    ``cfg.max_epochs`` epochs with ``regularizers``) on ``ds``; return every phase's result.
    The last phase's best state is left loaded in the modules.

    ``rng`` draws negatives, batch order and the plug-ins' epoch draws (torch's global RNG
    drives dropout and noise). With ``checkpoint_path`` the whole run state is saved at
    every evaluation; with ``resume`` it is loaded first (the stored ``run_params`` must
    equal the current ones) and the run continues where it stopped. ``callback(row)`` runs
    after every epoch with that epoch's log row (raising from it interrupts training, as a
    crash would).
    """
    device = torch.device(device)
    if phases is None:
        phases = [Phase("train", cfg.max_epochs, tuple(regularizers))]
    elif regularizers:
        raise ValueError("give the plug-ins in the phases, not as regularizers=")
    phases = list(phases)
    modules: list[nn.Module] = [model]
    for ph in phases:
        modules += [r for r in ph.regularizers if all(r is not m for m in modules)]
    for m in modules:
        m.to(device)
    run_params = dict(run_params if run_params is not None else dataclasses.asdict(cfg))
    run_params["phases"] = [(ph.name, ph.max_epochs, ph.steps_per_epoch, ph.select)
                            for ph in phases]
    train_m = ds.matrix("train")
    sampler = BPRSampler(ds.train, ds.n_items)
    valid_eval = Evaluator(train_m, ds.matrix("valid"), KS, cfg.eval_batch_size, device)
    test_eval = Evaluator(train_m, ds.matrix("test"), KS, cfg.eval_batch_size, device)

    st = _Progress()
    saved: dict[str, Any] | None = None
    if resume:
        if checkpoint_path is None:
            raise CheckpointError("resume requested but no checkpoint path was given")
        saved = load_checkpoint(checkpoint_path, map_location=device)
        check_same_run(saved["run_params"], run_params, checkpoint_path)
        st = _Progress(**saved["progress"])
        restore_rng(saved["rng"], rng)
        for ph in phases[:st.phase]:  # re-enter the finished phases (e.g. FACE's align)
            if ph.start is not None:
                ph.start()

    def save(optimizer: torch.optim.Optimizer | None,
             best_state: list[dict[str, torch.Tensor]] | None) -> None:
        """Checkpoint the run; at a phase's end (``optimizer`` None) the modules hold the
        phase's best state, which is where the next phase starts."""
        if checkpoint_path is not None:
            save_checkpoint({"run_params": run_params, "progress": dataclasses.asdict(st),
                             "model": snapshot(modules),
                             "optimizer": None if optimizer is None else optimizer.state_dict(),
                             "best_state": best_state, "finished": st.finished,
                             "rng": rng_state(rng)}, checkpoint_path)
        if log_path is not None:
            write_log(st.history, log_path)

    bar = None
    if progress and not st.finished:
        from tqdm.auto import tqdm

        bar = tqdm(total=sum(ph.max_epochs for ph in phases), desc=f"train {model.name}",
                   unit="epoch")
        bar.update(len(st.history))
    while not st.finished:
        ph = phases[st.phase]
        regs = list(ph.regularizers)
        if ph.start is not None:
            ph.start()
        optimizer = make_optimizer(model, regs, cfg)
        if saved is not None:  # resume: this phase's state (or the previous phase's end)
            load_states(modules, saved["model"])
            if saved["optimizer"] is not None:
                optimizer.load_state_dict(saved["optimizer"])
                best_state = saved["best_state"]
            saved = None
        if st.epoch == 0:
            best_state = snapshot(modules)
        offset = sum(d["epochs_run"] for d in st.done)
        stop = st.epoch >= ph.max_epochs or st.bad_evals >= cfg.patience
        while not stop:
            epoch = st.epoch + 1
            for m in modules:
                m.train()
            t0 = time.perf_counter()
            asked = [n for r in regs if (n := r.on_epoch_start(model, epoch, rng)) is not None]
            if ph.steps_per_epoch:
                asked.append(ph.steps_per_epoch)
            max_steps = min(asked) if asked else 0
            means, steps = train_epoch(model, regs, optimizer, sampler, rng, cfg.batch_size,
                                       device, epoch, max_steps)
            row: dict[str, Any] = {"epoch": offset + epoch, "phase": ph.name,
                                   "phase_epoch": epoch, "loss": sum(means.values()),
                                   **{f"loss_{k}": v for k, v in means.items()},
                                   "valid_recall@20": math.nan, "valid_ndcg@20": math.nan,
                                   "seconds": time.perf_counter() - t0, "eval_seconds": math.nan}
            st.steps += steps
            evaluate_now = epoch % cfg.eval_every == 0 or epoch == ph.max_epochs
            if evaluate_now:
                for m in modules:
                    m.eval()
                t1 = time.perf_counter()
                metrics = valid_eval(model)
                for r in regs:
                    metrics.update(r.validation_metrics(model))
                row["eval_seconds"] = time.perf_counter() - t1
                row.update({f"valid_{k}": v for k, v in metrics.items()
                            if k in ("recall@20", "ndcg@20") or "@" not in k})
                key, sign = ph.select.lstrip("-"), -1.0 if ph.select.startswith("-") else 1.0
                if key not in metrics:
                    raise TrainingError(f"phase {ph.name} selects on {key!r}, which no "
                                        f"validation pass gives (it has "
                                        f"{', '.join(sorted(metrics))})")
                if sign * metrics[key] > st.best_metric:
                    st.best_metric, st.best_epoch, st.best_valid = (sign * metrics[key], epoch,
                                                                    metrics)
                    best_state, st.bad_evals = snapshot(modules), 0
                else:
                    st.bad_evals += 1
            st.epoch = epoch
            st.seconds += time.perf_counter() - t0
            st.history.append(row)
            stop = evaluate_now and (st.bad_evals >= cfg.patience or epoch == ph.max_epochs)
            if evaluate_now and not stop:
                save(optimizer, best_state)
            if bar is not None:
                bar.update(1)
                bar.set_postfix(phase=ph.name, loss=f"{row['loss']:.4f}",
                                best=f"{st.best_metric:.4f}@{st.best_epoch}")
            if callback is not None:
                callback(row)
        # end of phase: best state, test once, next phase starts from here
        load_states(modules, best_state)
        for m in modules:
            m.eval()
        t1 = time.perf_counter()
        per_user = test_eval.per_user(model)
        st.seconds += time.perf_counter() - t1
        result = PhaseResult(
            name=ph.name, best_epoch=st.best_epoch, best_valid=st.best_valid,
            test=per_user.mean(), test_per_user=per_user, epochs_run=st.epoch,
            steps=st.steps, seconds=st.seconds, epoch_offset=offset,
            stopped_by="early_stopping" if st.bad_evals >= cfg.patience else "cap",
            state=snapshot(modules) if ph.keep_state else None)
        st.done.append(result.to_state())
        st = _Progress(phase=st.phase + 1, history=st.history, done=st.done,
                       finished=st.phase + 1 == len(phases))
        save(None, None)
    if saved is not None:  # resumed a finished run: its final (best) state
        load_states(modules, saved["model"])
        for m in modules:
            m.eval()
    if bar is not None:
        bar.close()
    return FitResult([PhaseResult.from_state(d) for d in st.done], st.history)
