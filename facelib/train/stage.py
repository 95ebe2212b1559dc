"""The ``train_cf`` stage: one backbone x seed run, its checkpoint, metrics and log.

Outputs (``publish=True``; with ``publish=False`` the same tree under ``build/smoke/``):

- ``checkpoints/cf/<dataset>/<backbone>-<seed>.pt``: final checkpoint, ``best_state`` =
  the best-validation weights (load with :func:`load_backbone`);
- ``reports/metrics/cf/<backbone>-<seed>.json``: test and best-validation metrics
  @5/10/20, best epoch, epochs run, seconds per epoch, the effective parameters, and the
  most-popular floor on the same split;
- ``reports/logs/cf/<backbone>-<seed>.csv``: one row per epoch (DVC plots);
- :func:`run_most_popular` writes ``reports/metrics/cf/most_popular.json``.
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch

from facelib import paths
from facelib.config import build
from facelib.data import RecDataset, load_dataset
from facelib.device import resolve_device
from facelib.eval import KS, Evaluator
from facelib.io import write_json
from facelib.models import Backbone, MostPopular, make_backbone
from facelib.seed import seed_everything
from facelib.train.checkpoint import load_checkpoint
from facelib.train.loop import EpochCallback, FitConfig, FitResult, fit
from facelib.train.params import TrainCFParams


@dataclass(frozen=True)
class RunPaths:
    checkpoint: Path
    metrics: Path
    log: Path


def output_root(publish: bool) -> Path:
    """The repository root for published runs, ``build/smoke`` otherwise."""
    return paths.repo_root() if publish else paths.repo_root() / "build" / "smoke"


def run_paths(p: TrainCFParams, publish: bool) -> RunPaths:
    root = output_root(publish)
    name = p.run_name()
    return RunPaths(checkpoint=root / "checkpoints" / "cf" / p.dataset / f"{name}.pt",
                    metrics=root / "reports" / "metrics" / "cf" / f"{name}.json",
                    log=root / "reports" / "logs" / "cf" / f"{name}.csv")


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


def most_popular_metrics(ds: RecDataset, split: str = "test",
                         batch_size: int = 2048) -> dict[str, float]:
    """Metrics of the most-popular floor on ``split``."""
    train = ds.matrix("train")
    return Evaluator(train, ds.matrix(split), KS, batch_size)(MostPopular(train))


def run_train_cf(p: TrainCFParams, progress: bool = False, publish: bool = False,
                 callback: EpochCallback | None = None) -> dict[str, Any]:
    """Train backbone ``p.backbone`` with seed ``p.seed`` on ``p.dataset``; write the
    checkpoint, metrics JSON and log CSV; return the metrics dict (also ``"history"``)."""
    p = p.resolved()
    if p.num_threads > 0:
        torch.set_num_threads(p.num_threads)
    device = resolve_device(p.device, "train_cf")
    ds = load_dataset(paths.processed_dir(p.dataset))
    out = run_paths(p, publish)
    rng = seed_everything(p.seed)
    model = make_backbone(p.backbone, ds.n_users, ds.n_items, p, ds.matrix("train"))
    t0 = time.perf_counter()
    res: FitResult = fit(model, ds, fit_config(p), rng, device=device,
                         checkpoint_path=out.checkpoint, log_path=out.log, resume=p.resume,
                         run_params=_run_params(p, ds), progress=progress, callback=callback)
    metrics = {
        "dataset": p.dataset, "backbone": p.backbone, "seed": p.seed,
        "test": res.test, "valid": res.best_valid, "best_epoch": res.best_epoch,
        "epochs_run": res.epochs_run, "stopped_early": res.stopped_early,
        "seconds_per_epoch": round(res.seconds_per_epoch, 4),
        "eval_seconds": round(res.eval_seconds, 4),
        "wall_seconds": round(time.perf_counter() - t0, 2),
        "device": str(device), "threads": torch.get_num_threads(),
        "most_popular": {"test": most_popular_metrics(ds, "test", p.eval_batch_size)},
        "params": {k: v for k, v in asdict(p).items() if k != "backbone_overrides"},
    }
    write_json(metrics, out.metrics)
    return {**metrics, "history": res.history, "paths": out}


def run_most_popular(dataset: str = "ml-1m", publish: bool = False) -> dict[str, Any]:
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
    """Rebuild a trained backbone from a ``train_cf`` checkpoint with its best-validation
    weights (what alignment plug-ins start from)."""
    ck = load_checkpoint(path, map_location=device)
    values = {k: v for k, v in ck["run_params"].items() if k != "data"}
    p = build(TrainCFParams, values, "train_cf")
    ds = ds if ds is not None else load_dataset(paths.processed_dir(p.dataset))
    if data_fingerprint(ds) != ck["run_params"].get("data"):
        from facelib.train.checkpoint import CheckpointError

        raise CheckpointError(f"checkpoint {path} was trained on another split of "
                              f"{p.dataset}; retrain it (dvc repro train_cf)")
    model = make_backbone(p.backbone, ds.n_users, ds.n_items, p, ds.matrix("train"))
    model.load_state_dict(ck["best_state"][0])
    return model.to(device).eval(), p
