"""``params.yaml`` section ``train_cf``: the base CF models (backbone x seed matrix)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from facelib.config import ParamsError, build, dataset_param, device_param, param, threads_param
from facelib.models.registry import BACKBONES
# keys that name the run; everything else may be overridden per backbone
_RUN_KEYS = ("dataset", "backbone", "seed", "backbone_overrides", "resume")


@dataclass(frozen=True)
class TrainCFParams:
    """``params.yaml`` section ``train_cf`` (defaults: the paper's values where CPU allows;
    params.yaml holds the CPU profile, the GPU profile is documented beside it)."""

    dataset: str = dataset_param()
    backbone: str = param("lightgcn", choices=BACKBONES, help=" | ".join(BACKBONES))
    seed: int = param(0, ge=0, help="seed of initialisation, negatives and dropout")
    dim: int = param(64, gt=0, help="embedding size d (paper 256)")
    layers: int = param(3, ge=1, help="propagation layers L (lightgcn, simgcl, lightgcl)")
    keep_rate: float = param(0.8, gt=0.0, le=1.0, help="edge-dropout keep rate (lightgcn)")
    reg: float = param(1e-6, ge=0.0, help="L2 weight; Adam weight decay is 2*reg")
    lr: float = param(1e-3, gt=0.0, help="Adam learning rate")
    batch_size: int = param(4096, ge=1, help="BPR triples per step (paper 256)")
    max_epochs: int = param(3000, ge=1, help="epoch cap")
    eval_every: int = param(1, ge=1, help="validate every this many epochs")
    patience: int = param(10, ge=1, help="stop after this many evaluations without gain")
    cl_weight: float = param(0.1, ge=0.0, help="SimGCL / LightGCL contrastive weight")
    cl_temp: float = param(0.2, gt=0.0, help="SimGCL / LightGCL contrastive temperature")
    eps: float = param(0.9, ge=0.0, help="SimGCL noise magnitude (reference 0.9, paper 0.1)")
    svd_q: int = param(5, ge=1, help="LightGCL rank of the SVD view")
    eval_batch_size: int = param(2048, ge=1, help="users per full-ranking batch")
    device: str = device_param()
    num_threads: int = threads_param()
    resume: bool = param(False, help="continue from the run's checkpoint")
    backbone_overrides: dict[str, dict[str, Any]] = param(
        {}, help="per-backbone values replacing the ones above, e.g. {simgcl: {reg: 1.0e-5}}")

    def __post_init__(self) -> None:
        if not isinstance(self.backbone_overrides, dict):
            raise ParamsError("params [train_cf.backbone_overrides]: expected a mapping "
                              "backbone -> {key: value}; fix the value in params.yaml")
        for name, values in self.backbone_overrides.items():
            if name not in BACKBONES:
                raise ParamsError(f"params [train_cf.backbone_overrides]: unknown backbone "
                                  f"{name!r}; choose one of {', '.join(BACKBONES)}")
            if not isinstance(values, dict):
                raise ParamsError(f"params [train_cf.backbone_overrides.{name}]: expected a "
                                  f"mapping key -> value; fix the value in params.yaml")
            bad = sorted(set(values) & set(_RUN_KEYS))
            if bad:
                raise ParamsError(f"params [train_cf.backbone_overrides.{name}]: {bad[0]} "
                                  f"cannot be overridden per backbone; set it at the top level")
            base = {**dataclasses.asdict(self), "backbone_overrides": {}}
            build(TrainCFParams, {**base, **values}, f"train_cf.backbone_overrides.{name}")

    def resolved(self) -> "TrainCFParams":
        """The effective parameters of this run: the backbone's overrides applied."""
        values = dict(self.backbone_overrides.get(self.backbone, {}))
        if not values:
            return self
        return build(TrainCFParams, {**dataclasses.asdict(self), **values}, "train_cf")

    def run_name(self) -> str:
        return f"{self.backbone}-{self.seed}"


# The two documented profiles of ``train_cf`` (params.yaml holds CPU; values not listed
# take the dataclass defaults). CPU: the 3 backbones x 3 seeds on ML-1M take ~13 minutes
# on 2 idle cores (measured s/epoch: mf 0.7, lightgcn 5.8, simgcl 32; ~25 s of notebook
# start-up per run); batch 4096 (RLMRec's CPU-friendly size) with lr 10x the paper's so
# that a few epochs converge; SimGCL's all-user InfoNCE bounds it to 3 epochs.
# GPU: the paper's setting (dim 256, batch 256, lr 1e-3, patience 10, up to 3000 epochs).
PROFILES: dict[str, dict[str, Any]] = {
    "cpu": {"dim": 64, "layers": 3, "keep_rate": 0.8, "reg": 1e-6, "lr": 0.01,
            "batch_size": 4096, "max_epochs": 12, "eval_every": 2, "patience": 3,
            "backbone_overrides": {"mf": {"max_epochs": 30},
                                   "simgcl": {"reg": 1e-5, "max_epochs": 3, "eval_every": 1}}},
    "gpu": {"dim": 256, "layers": 3, "keep_rate": 0.8, "reg": 1e-6, "lr": 1e-3,
            "batch_size": 256, "max_epochs": 3000, "eval_every": 1, "patience": 10,
            "device": "auto", "backbone_overrides": {"simgcl": {"reg": 1e-5}}},
}
