"""``params.yaml`` section ``rlmrec`` and where an RLMRec run reads and writes.

Regulariser defaults are RLMRec's own for Amazon-book (``modelconf/lightgcn_plus.yml``,
``lightgcn_gene.yml``): Con kd_weight 1e-2, τ 0.2; Gen mask_ratio 0.15, recon_weight 0.1,
τ 0.5. The backbone (d, layers, edge dropout, reg) and the schedule (lr, batch, epoch cap,
validation, patience) are those of the ``train_cf`` run of the same backbone and seed, read
from its checkpoint, so that the regulariser is the only difference from the base model.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from facelib import paths
from facelib.config import ParamsError, dataset_param, device_param, param, threads_param
from facelib.models.registry import BACKBONES
from facelib.train.stage import output_root, state_path

VARIANTS = ("con", "gen")  # RLMRec-Con (contrastive), RLMRec-Gen (generative, masking)
GROUP = "systems/rlmrec"   # output folders of the study's runs: <kind>/systems/rlmrec/...


@dataclass(frozen=True)
class RLMRecParams:
    """``params.yaml`` section ``rlmrec`` (defaults: RLMRec's Amazon-book values)."""

    dataset: str = dataset_param()
    backbone: str = param("lightgcn", choices=BACKBONES,
                          help="backbone trained with the regulariser (its train_cf run "
                               "gives d, layers, reg and the schedule)")
    seed: int = param(0, ge=0, help="seed of the run (and of the train_cf run it mirrors)")
    variants: list[str] = param(list(VARIANTS), choices=VARIANTS,
                                help="con (RLMRec-Con) and/or gen (RLMRec-Gen), each a run "
                                     "from scratch")
    kd_weight: float = param(1e-2, ge=0.0, help="Con: weight of the InfoNCE term")
    kd_tau: float = param(0.2, gt=0.0, help="Con: InfoNCE temperature")
    mask_ratio: float = param(0.15, gt=0.0, le=1.0, help="Gen: share of all nodes masked")
    recon_weight: float = param(0.1, ge=0.0, help="Gen: weight of the reconstruction term")
    recon_tau: float = param(0.5, gt=0.0, help="Gen: InfoNCE temperature")
    resume: bool = param(False, help="continue an interrupted run from its saved state")
    device: str = device_param()
    num_threads: int = threads_param()

    def __post_init__(self) -> None:
        if not self.variants or len(set(self.variants)) != len(self.variants):
            raise ParamsError(f"params [rlmrec.variants]: {list(self.variants)} must name "
                              f"con and/or gen, each once; fix it in params.yaml")

    def run_name(self) -> str:
        return f"{self.backbone}-{self.seed}"


Params = RLMRecParams  # the system's params class (facelib.systems convention)


@dataclass(frozen=True)
class RLMRecPaths:
    """An RLMRec run's files: the train_cf run it mirrors, and its outputs."""

    base_checkpoint: Path
    base_metrics: Path
    checkpoints: dict[str, Path]    # con, gen
    metrics: Path
    logs: dict[str, Path]           # con, gen
    per_user: Path
    state: dict[str, Path]          # con, gen (resumable, under build/state)


def run_files(root: Path, dataset: str, run: str) -> dict[str, Any]:
    """The output files of run ``run`` (``<backbone>-<seed>``) below ``root``: one folder
    per run under ``checkpoints/``, ``data/`` and ``reports/logs/``, and
    ``reports/metrics/systems/rlmrec/<run>.json``."""
    ck = root / "checkpoints" / GROUP / dataset / run
    logs = root / "reports" / "logs" / GROUP / run
    return {"checkpoints": {v: ck / f"{v}.pt" for v in VARIANTS},
            "metrics": root / "reports" / "metrics" / GROUP / f"{run}.json",
            "logs": {v: logs / f"{v}.csv" for v in VARIANTS},
            "per_user": root / "data" / GROUP / dataset / run / "per_user.npz"}


def rlmrec_paths(p: RLMRecParams, publish: bool) -> RLMRecPaths:
    """Where the run reads and writes. Unpublished runs write under build/smoke/ and read
    a smoke train_cf run when one exists, else the published one."""
    root, name = output_root(publish), p.run_name()
    cf = Path("checkpoints") / "cf" / p.dataset / f"{name}.pt"
    src = root if (root / cf).is_file() else paths.repo_root()
    return RLMRecPaths(
        base_checkpoint=src / cf,
        base_metrics=src / "reports" / "metrics" / "cf" / f"{name}.json",
        state={v: state_path(publish, GROUP, p.dataset, f"{name}-{v}") for v in VARIANTS},
        **run_files(root, p.dataset, name))
