"""The ``train_cf`` stage: one backbone x seed run, its checkpoint, metrics, log and
per-user test metrics.

Outputs (``publish=True``; with ``publish=False`` the same tree under ``build/smoke/``),
published together when the run has finished:

- ``checkpoints/cf/<dataset>/<backbone>-<seed>.pt``: the best-validation weights, the run's
  parameters and test metrics, marked finished (load with :func:`load_backbone`);
- ``reports/metrics/cf/<backbone>-<seed>.json``: test and best-validation metrics
  @5/10/20, best epoch, epochs run, how the run stopped, warning ``flags``
  (``diverging``: the loss exploded; ``below_most_popular``: test Recall@20 at or under the
  floor), seconds per epoch, the effective parameters, and the most-popular floor on the
  same split;
- ``reports/logs/cf/<backbone>-<seed>.csv``: one row per epoch (DVC plots);
- ``data/cf/<dataset>/per_user-<backbone>-<seed>.npz``: per-user test metrics (paired
  tests of any system against its base model);
- :func:`run_most_popular` writes ``reports/metrics/cf/most_popular.json``.

The in-progress state (for ``resume``) lives in ``build/state/``, outside the published
outputs, so that DVC, which deletes a stage's outputs before running it, never removes it.
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from facelib import paths
from facelib.config import build
from facelib.data import RecDataset, load_dataset
from facelib.device import resolve_device
from facelib.eval import KS, Evaluator, PerUserMetrics
from facelib.io import StagedOutputs, atomic_file, write_json
from facelib.models import Backbone, MostPopular, make_backbone
from facelib.seed import seed_everything
from facelib.train.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from facelib.train.loop import (EpochCallback, FitConfig, FitResult, fit, warning_flags,
                                write_log)
from facelib.train.params import TrainCFParams


@dataclass(frozen=True)
class RunPaths:
    checkpoint: Path
    metrics: Path
    log: Path
    per_user: Path
    state: Path


def output_root(publish: bool) -> Path:
    """The repository root for published runs, ``build/smoke`` otherwise."""
    return paths.repo_root() if publish else paths.repo_root() / "build" / "smoke"


def state_path(publish: bool, *parts: str) -> Path:
    """Where a run's in-progress state lives: ``build/state/<parts...>.pt`` (smoke runs:
    ``build/state/smoke/...``), never under a DVC output."""
    base = paths.repo_root() / "build" / "state" / ("" if publish else "smoke")
    return base.joinpath(*parts[:-1]) / f"{parts[-1]}.pt"


def run_paths(p: TrainCFParams, publish: bool) -> RunPaths:
    root = output_root(publish)
    name = p.run_name()
    return RunPaths(checkpoint=root / "checkpoints" / "cf" / p.dataset / f"{name}.pt",
                    metrics=root / "reports" / "metrics" / "cf" / f"{name}.json",
                    log=root / "reports" / "logs" / "cf" / f"{name}.csv",
                    per_user=root / "data" / "cf" / p.dataset / f"per_user-{name}.npz",
                    state=state_path(publish, "cf", p.dataset, name))


def data_fingerprint(ds: RecDataset) -> str:
    """Short hash of the split, so a checkpoint is never resumed on other data."""
    h = hashlib.sha256()
    h.update(f"{ds.n_users}x{ds.n_items}".encode())
    for split in (ds.train, ds.valid, ds.test):
        h.update(split.astype("int64").tobytes())
    return h.hexdigest()[:16]


def fit_config(p: TrainCFParams) -> FitConfig:
    return FitConfig(lr=p.lr, reg=p.reg, batch_size=p.batch_size, max_epochs=p.max_epochs,
                     eval_every=p.eval_every, patience=p.patience,
                     eval_batch_size=p.eval_batch_size)


def _run_params(p: TrainCFParams, ds: RecDataset) -> dict[str, Any]:
    """Parameters a resumed run must share with the checkpoint (all but ``resume``,
    ``num_threads``, ``backbone_overrides``: the resolved values are compared instead)."""
    out = asdict(p)
    for key in ("resume", "num_threads", "backbone_overrides"):
        out.pop(key)
    out["data"] = data_fingerprint(ds)
    return out


def save_per_user(path: Path, per_user: dict[str, PerUserMetrics]) -> Path:
    """Per-user test metrics of one or more systems, for paired tests: ``users`` [M] int64
    (ascending) and one float64 [M] array per ``"<system>.<metric>"``, all aligned."""
    users = next(iter(per_user.values())).users
    arrays: dict[str, np.ndarray] = {"users": users}
    for system, pu in per_user.items():
        if not np.array_equal(pu.users, users):
            raise ValueError(f"per-user metrics of {system} cover other users than the rest")
        arrays.update({f"{system}.{m}": v for m, v in pu.values.items()})
    with atomic_file(path, "wb") as fh:
        np.savez_compressed(fh, **arrays)
    return Path(path)


def most_popular_metrics(ds: RecDataset, split: str = "test",
                         batch_size: int = 2048) -> dict[str, float]:
    """Metrics of the most-popular floor on ``split``."""
    train = ds.matrix("train")
    return Evaluator(train, ds.matrix(split), KS, batch_size)(MostPopular(train))


def run_train_cf(p: TrainCFParams, progress: bool = False, publish: bool = False,
                 callback: EpochCallback | None = None) -> dict[str, Any]:
    """Train backbone ``p.backbone`` with seed ``p.seed`` on ``p.dataset``; publish the
    checkpoint, metrics JSON, log CSV and per-user metrics together; return the metrics
    dict (also ``"history"`` and ``"paths"``)."""
    p = p.resolved()
    if p.num_threads > 0:
        torch.set_num_threads(p.num_threads)
    device = resolve_device(p.device, "train_cf")
    ds = load_dataset(paths.processed_dir(p.dataset))
    out = run_paths(p, publish)
    rng = seed_everything(p.seed)
    model = make_backbone(p.backbone, ds.n_users, ds.n_items, p, ds.matrix("train"))
    t0 = time.perf_counter()
    run_params = _run_params(p, ds)
    res: FitResult = fit(model, ds, fit_config(p), rng, device=device,
                         checkpoint_path=out.state, resume=p.resume, run_params=run_params,
                         progress=progress, callback=callback)
    floor = most_popular_metrics(ds, "test", p.eval_batch_size)
    flags = warning_flags(res.history)
    if res.test["recall@20"] <= floor["recall@20"]:
        flags.append("below_most_popular")
    metrics = {
        "dataset": p.dataset, "backbone": p.backbone, "seed": p.seed,
        "test": res.test, "valid": res.best_valid, "best_epoch": res.best_epoch,
        "epochs_run": res.epochs_run, "stopped_by": res.stopped_by, "flags": flags,
        "seconds_per_epoch": round(res.seconds_per_epoch, 4),
        "eval_seconds": round(res.eval_seconds, 4),
        "wall_seconds": round(time.perf_counter() - t0, 2),
        "device": str(device), "threads": torch.get_num_threads(),
        "most_popular": {"test": floor},
        "params": {k: v for k, v in asdict(p).items() if k != "backbone_overrides"},
    }
    with StagedOutputs(paths.repo_root() / "build") as staged:
        save_checkpoint({"run_params": run_params, "best_state": [model.state_dict()],
                         "finished": True, "test": res.test, "stopped_by": res.stopped_by},
                        staged(out.checkpoint))
        write_json(metrics, staged(out.metrics))
        write_log(res.history, staged(out.log))
        save_per_user(staged(out.per_user), {"base": res.test_per_user})
        staged.publish()
    return {**metrics, "history": res.history, "paths": out}


def run_most_popular(dataset: str, publish: bool = False) -> dict[str, Any]:
    """Test (and validation) metrics of the most-popular floor ->
    ``reports/metrics/cf/most_popular.json``."""
    ds = load_dataset(paths.processed_dir(dataset))
    metrics = {"dataset": dataset, "backbone": "most_popular",
               "test": most_popular_metrics(ds, "test"),
               "valid": most_popular_metrics(ds, "valid")}
    write_json(metrics, output_root(publish) / "reports" / "metrics" / "cf" / "most_popular.json")
    return metrics


def load_backbone(path: Path, ds: RecDataset | None = None,
                  device: torch.device | str = "cpu") -> tuple[Backbone, TrainCFParams]:
    """Rebuild a trained backbone from a published ``train_cf`` checkpoint with its
    best-validation weights (what alignment plug-ins start from)."""
    ck = load_checkpoint(path, map_location=device, made_by="train_cf")
    if not ck.get("finished"):
        raise CheckpointError(f"checkpoint {path} is not of a finished run; rerun the "
                              f"train_cf stage (dvc repro train_cf)")
    values = {k: v for k, v in ck["run_params"].items() if k not in ("data", "phases")}
    p = build(TrainCFParams, values, "train_cf")
    ds = ds if ds is not None else load_dataset(paths.processed_dir(p.dataset))
    if data_fingerprint(ds) != ck["run_params"].get("data"):
        raise CheckpointError(f"checkpoint {path} was trained on another split of "
                              f"{p.dataset}; rerun the train_cf stage (dvc repro train_cf)")
    model = make_backbone(p.backbone, ds.n_users, ds.n_items, p, ds.matrix("train"))
    model.load_state_dict(ck["best_state"][0])
    return model.to(device).eval(), p
