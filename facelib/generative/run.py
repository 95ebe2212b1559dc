"""What every run of the generative pipeline (``generative/dvc.yaml``) shares: its params
fields, where it reads and writes, and publishing its files together.

Outputs of system ``<system>`` on run ``<run>`` (``publish=True``; with ``publish=False``
the same tree under ``build/smoke/``), published together once the run has finished:

- ``checkpoints/generative/<system>/<dataset>/<run>/``: model states;
- ``data/generative/<system>/<dataset>/<run>/``: arrays (item indices, top-K caches);
- ``reports/metrics/generative/<system>/<run>.json``: metrics, how the run ended, params;
- ``reports/logs/generative/<system>/<run>/<part>.csv``: one row per epoch of each part.

The in-progress state lives in ``build/state/`` (``resume: true`` continues there).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from facelib import paths
from facelib.config import dataset_param, device_param, param, threads_param
from facelib.data import RecDataset, load_dataset
from facelib.generative.leave_one_out import LeaveOneOut, split_dataset
from facelib.io import StagedOutputs, write_json
from facelib.train.checkpoint import save_checkpoint
from facelib.train.loop import write_log
from facelib.train.stage import output_root, state_path

PIPELINE = "generative"  # the output group and the pipeline folder (generative/dvc.yaml)
PROTOCOLS = ("leave_one_out", "ratio")  # LC-Rec's protocol; the study's 3:1:1 split
BASELINES = ("sasrec", "mf", "lightgcn")   # the leave-one-out reference points
LABELS = {"sasrec": "SASRec", "mf": "MF (BPR)", "lightgcn": "LightGCN", "lcrec": "LC-Rec",
          "semconv": "Semantic Convergence (reconstructed)"}  # system -> row label


@dataclass(frozen=True)
class RunParams:
    """The fields every generative stage's params section has (its own follow)."""

    dataset: str = dataset_param()
    seed: int = param(0, ge=0, help="seed of the run")
    resume: bool = param(False, help="continue an interrupted run from its saved state")
    device: str = device_param()
    num_threads: int = threads_param()


@dataclass(frozen=True)
class RunFiles:
    """A run's files (see the module docstring)."""

    checkpoints: Path
    data: Path
    metrics: Path
    logs: Path

    def state(self, part: str, publish: bool) -> Path:
        """The resumable state of one part of the run (under ``build/state/``)."""
        *_, system, dataset, run = self.checkpoints.parts
        return state_path(publish, PIPELINE, system, dataset, f"{run}-{part}")


def run_files(system: str, dataset: str, run: str, publish: bool) -> RunFiles:
    """Where run ``run`` of ``system`` writes (below ``build/smoke/`` unless ``publish``)."""
    root = output_root(publish)
    group = f"{PIPELINE}/{system}"
    return RunFiles(checkpoints=root / "checkpoints" / group / dataset / run,
                    data=root / "data" / group / dataset / run,
                    metrics=root / "reports" / "metrics" / group / f"{run}.json",
                    logs=root / "reports" / "logs" / group / run)


def load_split(dataset: str) -> tuple[RecDataset, LeaveOneOut]:
    """The processed dataset and its chronological leave-one-out split."""
    ds = load_dataset(paths.processed_dir(dataset))
    return ds, split_dataset(ds)


def prepare_smoke_inputs(dataset: str) -> None:
    """Write the synthetic processed dataset a standalone smoke run needs, when missing."""
    if dataset != "synthetic" or (paths.processed_dir(dataset) / "meta.json").exists():
        return
    from facelib.config import build
    from facelib.data import DataParams, prepare_dataset

    prepare_dataset(build(DataParams, {"dataset": "synthetic"}, "data"))


def set_threads(num_threads: int) -> None:
    """Use ``num_threads`` torch CPU threads (0: leave torch's default)."""
    if num_threads:
        torch.set_num_threads(num_threads)


def publish_run(files: RunFiles, metrics: dict[str, Any],
                logs: Mapping[str, list[dict[str, Any]]],
                states: Mapping[str, dict[str, Any]] | None = None,
                arrays: Mapping[str, Mapping[str, np.ndarray]] | None = None) -> Path:
    """Write a finished run's metrics JSON, per-part logs, checkpoints
    (``<checkpoints>/<name>.pt``) and arrays (``<data>/<name>.npz``) together: a run that
    fails before this call leaves the previous outputs as they were."""
    with StagedOutputs(paths.repo_root() / "build") as staged:
        for name, state in (states or {}).items():
            save_checkpoint(state, staged(files.checkpoints / f"{name}.pt"))
        for name, history in logs.items():
            write_log(history, staged(files.logs / f"{name}.csv"))
        for name, named in (arrays or {}).items():
            with open(staged(files.data / f"{name}.npz"), "wb") as fh:
                np.savez(fh, **named)
        write_json(metrics, staged(files.metrics))
        staged.publish()
    return files.metrics
