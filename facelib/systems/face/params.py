"""``params.yaml`` section ``face`` and where a FACE run reads and writes.

Defaults are the paper's values (FACE's hyperparameters take theirs from
:class:`FACEConfig`, written once there); ``params.yaml`` holds the study's profile.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from facelib import paths
from facelib.config import ParamsError, dataset_param, device_param, param, threads_param
from facelib.models.registry import BACKBONES
from facelib.systems.face.model.module import ALIGN_BATCHES, REFERENCE_SWITCHES, FACEConfig
from facelib.systems.joint import PIPELINE, base_files
from facelib.systems.joint import run_files as joint_run_files
from facelib.train.stage import output_root, state_path

_D = FACEConfig()
# the align phase's stopping rule -> the validation key it watches ("-": lower is better)
ALIGN_SELECT = {"recall@20": "recall@20", "align_mrr": "align_mrr", "align_loss": "-align_loss"}
GROUP = "systems/face"  # output folders of the study's runs: <kind>/systems/face/...
# what FACE starts from: the train_cf run, or a jointly trained system's (system, variant)
# run, whose own term stays on (the reference's lightgcn_plus_vq keeps RLMRec-Con's kd loss)
STARTS: dict[str, tuple[str, str] | None] = {"train_cf": None, "rlmrec_con": ("rlmrec", "con")}


@dataclass(frozen=True)
class FaceParams:
    """``params.yaml`` section ``face`` (defaults: the paper's values, no CPU bounds)."""

    dataset: str = dataset_param()
    backbone: str = param("lightgcn", choices=BACKBONES, help="pretrained by train_cf")
    seed: int = param(0, ge=0, help="seed of the pretrained run and of this stage")
    start: str = param("train_cf", choices=tuple(STARTS),
                       help="the model FACE starts from: the train_cf run, or RLMRec-Con's "
                            "(its term stays on; outputs under related/)")
    related: bool = param(False, help="a run of the related pipeline (make related: the "
                                      "backbones of study.extra_regularized): outputs under "
                                      "related/face")
    word_num: int = param(_D.word_num, ge=1, help="C, descriptors per entity")
    word_dim: int = param(_D.word_dim, ge=1, help="D, concept width")
    ffn_dim: int = param(_D.ffn_dim, ge=1, help="feed-forward width of the concept layers")
    dim: int = param(0, ge=0, help="backbone embedding size d expected (0: the checkpoint's)")
    vq_weight: float = param(_D.vq_weight, ge=0.0, help="weight of L_vq")
    recons_weight: float = param(_D.recons_weight, ge=0.0, help="weight of L_rec")
    align_weight: float = param(_D.align_weight, ge=0.0, help="weight of L_align")
    tau: float = param(_D.tau, gt=0.0, help="alignment InfoNCE temperature")
    lr: float = param(1e-3, gt=0.0, help="FACE lr (no decay); backbone lr * base_lr_scale")
    base_lr_scale: float = param(0.1, ge=0.0, help="backbone lr factor (reference: lr/10)")
    map_max_epochs: int = param(3000, ge=1, help="map epoch cap")
    align_max_epochs: int = param(3000, ge=1, help="align epoch cap")
    patience: int = param(10, ge=1, help="evaluations without validation gain")
    eval_every: int = param(1, ge=1, help="validate every this many epochs")
    batch_size: int = param(256, ge=1, help="BPR triples per step (3B rows into FACE)")
    align_batch: str = param(_D.align_batch, choices=ALIGN_BATCHES,
                             help="align rows: triples (the reference) | entities (distinct)")
    align_batch_size: int = param(_D.align_batch_size, ge=2,
                                  help="entities per alignment batch (align_batch entities)")
    align_select: str = param("recall@20", choices=tuple(ALIGN_SELECT),
                              help="align stage stops on validation recall@20 (the reference), "
                                   "or on held-out entities' align_mrr (descriptor -> profile "
                                   "retrieval) or align_loss (InfoNCE)")
    align_holdout: float = param(0.0, ge=0.0, lt=0.5,
                                 help="share of users and items held out of the alignment as "
                                      "validation, and as many as test (0: none, the paper)")
    map_steps_per_epoch: int = param(0, ge=0, help="bound: batches per map epoch (0: all)")
    align_steps_per_epoch: int = param(0, ge=0, help="bound: batches per align epoch (0: all)")
    align_entities: int = param(0, ge=0, help="bound: rows aligned per step (0: all)")
    reference_vq_weights: bool = param(False, help="0.75/0.25 VQ weights (quirk 9.7)")
    reference_prompt_order: bool = param(False, help="scrambled prompt types (quirk 9.2)")
    encoder_dropout: bool = param(False, help="MiniLM in train mode (quirk 9.5)")
    pinv_words: bool = param(False, help="pinv-projected words (quirk 9.4)")
    reference_init: bool = param(False, help="cross-concept orthogonal W, N(0,1) b (9.6)")
    control: bool = param(True, help="also train the control run (FACE losses off)")
    tag: str = param("", name=True, help="variant name: non-empty writes under ablations/")
    resume: bool = param(False, help="continue an interrupted run from its saved state")
    device: str = device_param()
    num_threads: int = threads_param()

    def __post_init__(self) -> None:
        if self.align_entities == 1:
            raise ParamsError("params [face.align_entities]: 1 row leaves no negative; use 0 "
                              "(all rows) or >= 2")
        if self.align_select != "recall@20" and self.align_holdout == 0:
            raise ParamsError(f"params [face.align_select]: {self.align_select} needs held-out "
                              f"entities; set face.align_holdout > 0 (e.g. 0.1) or select "
                              f"recall@20")

    def run_name(self) -> str:
        return f"{self.backbone}-{self.seed}" + (f"-{self.tag}" if self.tag else "")

    def group(self) -> str:
        """Output tree: ``systems/face`` for the study's runs (where the results stage reads
        every regulariser system), ``ablations`` for tagged variants,
        ``related/face_on_<start>`` for runs on top of another system, ``related/face`` for
        the related pipeline's runs on the study's extra backbones."""
        if self.tag:
            return "ablations"
        if self.start != "train_cf":
            return f"{PIPELINE}/face_on_{self.start}"
        return f"{PIPELINE}/face" if self.related else GROUP

    def face_config(self, prompt_noun: str) -> FACEConfig:
        """The FACE module's configuration (map stage; the align stage is entered later)."""
        return FACEConfig(
            word_num=self.word_num, word_dim=self.word_dim, vq_weight=self.vq_weight,
            recons_weight=self.recons_weight, align_weight=self.align_weight, tau=self.tau,
            stage="map", prompt_noun=prompt_noun, ffn_dim=self.ffn_dim,
            align_entities=self.align_entities or None, align_batch=self.align_batch,
            align_batch_size=self.align_batch_size,
            **{s: getattr(self, s) for s in REFERENCE_SWITCHES})

    def bounds(self) -> dict[str, Any]:
        """The budget in force (recorded in every metrics JSON)."""
        keys = ("batch_size", "map_max_epochs", "align_max_epochs", "map_steps_per_epoch",
                "align_steps_per_epoch", "align_entities", "align_batch", "align_batch_size",
                "align_select", "align_holdout", "patience", "eval_every", "word_num",
                "word_dim", "ffn_dim")
        return {k: getattr(self, k) for k in keys}


Params = FaceParams  # the system's params class (facelib.systems convention)


@dataclass(frozen=True)
class FacePaths:
    """A FACE run's files: inputs (the pretrained run) and outputs, one folder per run."""

    pretrained: Path
    pretrained_metrics: Path
    checkpoints: dict[str, Path]    # map, align, control
    metrics: Path
    logs: dict[str, Path]           # face, control
    descriptors: dict[str, Path]    # align, map
    per_user: Path
    state: dict[str, Path]          # face, control (resumable, under build/state)


def run_files(root: Path, group: str, dataset: str, run: str) -> dict[str, Any]:
    """The output files of run ``run`` (``<backbone>-<seed>[-<tag>]``) of ``group`` (face
    or ablations) below ``root``: one folder per run under ``checkpoints/``, ``data/`` and
    ``reports/logs/``, and ``reports/metrics/<group>/<run>.json``."""
    ck = root / "checkpoints" / group / dataset / run
    data = root / "data" / group / dataset / run
    logs = root / "reports" / "logs" / group / run
    return {"checkpoints": {s: ck / f"{s}.pt" for s in ("map", "align", "control")},
            "metrics": root / "reports" / "metrics" / group / f"{run}.json",
            "logs": {r: logs / f"{r}.csv" for r in ("face", "control")},
            "descriptors": {"align": data / "descriptors.csv", "map": data / "descriptors-map.csv"},
            "per_user": data / "per_user.npz"}


def face_paths(p: FaceParams, publish: bool) -> FacePaths:
    """Where the run reads and writes. Unpublished runs write under build/smoke/ and read
    a smoke start run when one exists, else the published one."""
    root, name, group = output_root(publish), p.run_name(), p.group()
    start = STARTS[p.start]
    if start is None:
        pretrained, metrics = base_files(p.dataset, p.backbone, p.seed, publish)
    else:
        system, variant = start
        run = f"{p.backbone}-{p.seed}"
        files = joint_run_files(root, system, p.dataset, run, [variant])
        if not files["checkpoints"][variant].is_file():
            files = joint_run_files(paths.repo_root(), system, p.dataset, run, [variant])
        pretrained, metrics = files["checkpoints"][variant], files["metrics"]
    return FacePaths(
        pretrained=pretrained, pretrained_metrics=metrics,
        state={r: state_path(publish, group, p.dataset, f"{name}-{r}")
               for r in ("face", "control")},
        **run_files(root, group, p.dataset, name))
