"""Training of CF backbones: parameters, the BPR loop with early stopping and exact
resume, checkpoints, and the ``train_cf`` stage.

    from facelib.train import TrainCFParams, run_train_cf
    run_train_cf(build(TrainCFParams, {"backbone": "mf"}, "train_cf"), progress=True)

Alignment plug-ins reuse :func:`fit` with their own :class:`Phase` list (each phase its
regularizers, epoch cap and stopping key) and ``FitConfig(base_lr_scale=0.1, ...)``,
starting from :func:`load_backbone`.
"""

from facelib.train.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from facelib.train.loop import (
    STOPPED_BY,
    FitConfig,
    FitResult,
    Phase,
    PhaseResult,
    TrainingError,
    fit,
    make_optimizer,
    train_epoch,
)
from facelib.train.params import TrainCFParams
from facelib.train.stage import (
    load_backbone,
    most_popular_metrics,
    output_root,
    run_most_popular,
    run_paths,
    run_train_cf,
    save_per_user,
    state_path,
)

__all__ = [
    "STOPPED_BY", "CheckpointError", "FitConfig", "FitResult", "Phase", "PhaseResult",
    "TrainCFParams", "TrainingError", "fit", "load_backbone", "load_checkpoint",
    "make_optimizer", "most_popular_metrics", "output_root", "run_most_popular", "run_paths",
    "run_train_cf", "save_checkpoint", "save_per_user", "state_path", "train_epoch",
]
