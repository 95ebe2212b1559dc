"""The ``face`` stage: map, align and the control run on one pretrained backbone x seed.

Starting from the ``train_cf`` checkpoint of ``backbone``/``seed`` (its best-validation
weights), three schedules are trained, each with early stopping on validation Recall@20
(the first evaluation of a stage is always accepted, as the reference)::

    map      L = L_base + vq_weight L_vq + recons_weight L_rec               FACE stage "map"
    align    L = L_base + vq_weight L_vq + recons_weight L_rec + align_weight L_align
             (starts from the best map state; the frozen MiniLM runs forward and backward)
    control  L = L_base, the same two budgets back to back (map epochs, then align
             epochs, same steps per epoch, same lr scale, same early stopping)

Adam groups: backbone at ``lr * base_lr_scale`` with the train_cf weight decay ``2*reg``,
FACE at ``lr`` without decay (:func:`facelib.train.make_optimizer`). Scoring is always the
backbone's dot product of its fine-tuned embeddings; the reported FACE numbers are test
metrics of the best-validation state of the align stage.

CPU bounds (0 = off, the paper): ``map_steps_per_epoch`` / ``align_steps_per_epoch`` cut an
"epoch" to that many batches of fresh BPR triples; ``align_entities`` aligns that many of
the 3B rows per step. The metrics JSON states the bounds in force.

Outputs (``publish=True``; with ``publish=False`` the same tree under ``build/smoke/``):

- ``checkpoints/face/<dataset>/<backbone>-<seed>-{map,align,control}.pt``: backbone and
  FACE state dicts (never the encoder's weights), FACE config, history, metrics;
- ``reports/metrics/face/<backbone>-<seed>.json``: base, FACE and control test metrics,
  per-stage epochs and seconds, bounds, switches;
- ``reports/logs/face/<backbone>-<seed>-{face,control}.csv``: one row per epoch;
- ``data/face/<dataset>/descriptors-<backbone>-<seed>[-map].csv``: entity, entity_id,
  concept, word for every user and item, after align (and after map);
- ``data/face/<dataset>/per_user-<backbone>-<seed>.npz``: per-user test metrics of base,
  map, face and control (paired significance in the results stage).

A non-empty ``tag`` (an ablation variant) writes the same files under ``ablations/`` in
place of ``face/``, named ``<backbone>-<seed>-<tag>``; ``control: false`` skips the control.
"""

from __future__ import annotations

import math
import re
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import nn

from facelib import paths
from facelib.device import resolve_device
from facelib.config import ParamsError, param
from facelib.data import RecDataset, load_dataset
from facelib.data.errors import DataError
from facelib.eval import KS, Evaluator, PerUserMetrics
from facelib.models import Backbone
from facelib.systems.face import FACE, REFERENCE_SWITCHES, FACEConfig
from facelib.models.sampling import BPRSampler
from facelib.seed import seed_everything
from facelib.train import FitConfig, load_backbone, make_optimizer, save_checkpoint
from facelib.train.checkpoint import load_checkpoint
from facelib.train.loop import TrainingError, snapshot, train_epoch, write_log
from facelib.train.stage import output_root

SELECT = "recall@20"


class FaceError(DataError):
    """An input of the face stage is missing or does not fit (one-line message)."""


@dataclass(frozen=True)
class FaceParams:
    """``params.yaml`` section ``face`` (defaults: the paper's values, no CPU bounds)."""

    dataset: str = param("ml-1m", help="processed dataset (filled from data.dataset)")
    backbone: str = param("lightgcn", choices=("mf", "lightgcn", "simgcl"))
    seed: int = param(0, ge=0, help="seed of the pretrained run and of this stage")
    word_num: int = param(16, ge=1, help="C, descriptors per entity")
    word_dim: int = param(256, ge=1, help="D, concept width")
    ffn_dim: int = param(2048, ge=1, help="feed-forward width of the concept layers")
    dim: int = param(0, ge=0, help="backbone embedding size d expected (0: the checkpoint's)")
    vq_weight: float = param(1.0, ge=0.0)
    recons_weight: float = param(1.0, ge=0.0)
    align_weight: float = param(0.1, ge=0.0)
    tau: float = param(0.02, gt=0.0, help="alignment InfoNCE temperature")
    lr: float = param(1e-3, gt=0.0, help="FACE lr (no decay); backbone lr * base_lr_scale")
    base_lr_scale: float = param(0.1, ge=0.0)
    map_max_epochs: int = param(3000, ge=1)
    align_max_epochs: int = param(3000, ge=1)
    patience: int = param(10, ge=1, help="evaluations without validation gain")
    eval_every: int = param(1, ge=1)
    batch_size: int = param(256, ge=1, help="BPR triples per step (3B rows into FACE)")
    map_steps_per_epoch: int = param(0, ge=0, help="CPU bound: batches per map epoch (0 all)")
    align_steps_per_epoch: int = param(0, ge=0, help="CPU bound: batches per align epoch")
    align_entities: int = param(0, ge=0, help="CPU bound: rows of the 3B aligned (0 all)")
    reference_vq_weights: bool = param(False, help="0.75/0.25 VQ weights (quirk 9.7)")
    reference_prompt_order: bool = param(False, help="scrambled prompt types (quirk 9.2)")
    encoder_dropout: bool = param(False, help="MiniLM in train mode (quirk 9.5)")
    pinv_words: bool = param(False, help="pinv-projected words (quirk 9.4)")
    reference_init: bool = param(False, help="cross-concept orthogonal W, N(0,1) b (9.6)")
    control: bool = param(True, help="also train the control run (FACE losses off)")
    tag: str = param("", help="variant name: non-empty writes under the ablations tree")
    device: str = param("auto", choices=("cpu", "cuda", "auto"))
    num_threads: int = param(0, ge=0, help="torch CPU threads (0: torch's default)")

    def __post_init__(self) -> None:
        if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]*", self.dataset):
            raise ParamsError(f"params [face.dataset]: {self.dataset!r} is not a dataset name")
        if self.tag and not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]*", self.tag):
            raise ParamsError(f"params [face.tag]: {self.tag!r} is not a file-name-safe tag; "
                              f"use letters, digits, '.', '_' or '-'")
        if self.align_entities == 1:
            raise ParamsError("params [face.align_entities]: 1 row leaves no negative; use 0 "
                              "(all rows) or >= 2")

    def run_name(self) -> str:
        return f"{self.backbone}-{self.seed}" + (f"-{self.tag}" if self.tag else "")

    def group(self) -> str:
        """Output tree: ``face`` for the study's runs, ``ablations`` for tagged variants."""
        return "ablations" if self.tag else "face"

    def face_config(self, stage: str, prompt_noun: str = "movie") -> FACEConfig:
        return FACEConfig(
            word_num=self.word_num, word_dim=self.word_dim, vq_weight=self.vq_weight,
            recons_weight=self.recons_weight, align_weight=self.align_weight, tau=self.tau,
            stage=stage, prompt_noun=prompt_noun, ffn_dim=self.ffn_dim,
            align_entities=self.align_entities or None,
            **{s: getattr(self, s) for s in REFERENCE_SWITCHES})

    def bounds(self) -> dict[str, Any]:
        keys = ("batch_size", "map_max_epochs", "align_max_epochs", "map_steps_per_epoch",
                "align_steps_per_epoch", "align_entities", "patience", "eval_every",
                "word_num", "word_dim", "ffn_dim")
        return {k: getattr(self, k) for k in keys}


@dataclass(frozen=True)
class FacePaths:
    pretrained: Path
    checkpoints: dict[str, Path]
    metrics: Path
    logs: dict[str, Path]
    descriptors: dict[str, Path]
    per_user: Path


def face_paths(p: FaceParams, publish: bool) -> FacePaths:
    """Where the run reads and writes. Unpublished runs write under build/smoke/ and read
    a smoke pretrained checkpoint when one exists, else the published one."""
    root, name, group = output_root(publish), p.run_name(), p.group()
    cf_name = f"{p.backbone}-{p.seed}"
    cf = Path("checkpoints") / "cf" / p.dataset / f"{cf_name}.pt"
    src = root if (root / cf).is_file() else paths.repo_root()
    data = root / "data" / group / p.dataset
    return FacePaths(
        pretrained=src / cf,
        checkpoints={s: root / "checkpoints" / group / p.dataset / f"{name}-{s}.pt"
                     for s in ("map", "align", "control")},
        metrics=root / "reports" / "metrics" / group / f"{name}.json",
        logs={r: root / "reports" / "logs" / group / f"{name}-{r}.csv"
              for r in ("face", "control")},
        descriptors={"align": data / f"descriptors-{name}.csv",
                     "map": data / f"descriptors-{name}-map.csv"},
        per_user=data / f"per_user-{name}.npz")


# ------------------------------------------------------------------------ inputs
def check_inputs(p: FaceParams, fp: FacePaths, ds: RecDataset, vocab_size: int,
                 text_shape: tuple[int, int]) -> None:
    """One-line errors before any training: vocabulary size, checkpoint, dimensions."""
    if p.word_num > vocab_size:
        raise ParamsError(f"params [face.word_num]: {p.word_num} is larger than the "
                          f"vocabulary ({vocab_size} words in data/text/{p.dataset}); "
                          f"choose word_num <= {vocab_size}")
    if not fp.pretrained.is_file():
        raise FaceError(f"no pretrained {p.backbone} checkpoint at {fp.pretrained}; run the "
                        f"train_cf stage first (dvc repro train_cf, or python -m "
                        f"facelib.pipeline train_cf --set backbone={p.backbone} "
                        f"--set seed={p.seed})")
    if text_shape != (ds.n_users, ds.n_items):
        raise FaceError(f"text artifacts of {p.dataset} have {text_shape[0]} users x "
                        f"{text_shape[1]} items but the dataset {ds.n_users} x {ds.n_items}; "
                        f"run the text stage again")


def load_pretrained(p: FaceParams, fp: FacePaths, ds: RecDataset,
                    device: torch.device) -> tuple[Backbone, Any]:
    """The pretrained backbone (best-validation weights) and its train_cf parameters."""
    ck = load_checkpoint(fp.pretrained)
    run = ck.get("run_params", {})
    if run.get("backbone") != p.backbone or run.get("seed") != p.seed:
        raise FaceError(f"checkpoint {fp.pretrained} holds {run.get('backbone')}-"
                        f"{run.get('seed')}, not {p.run_name()}; rerun the train_cf stage")
    if p.dim and run.get("dim") != p.dim:
        raise FaceError(f"dimension mismatch: checkpoint {fp.pretrained} has embedding size "
                        f"{run.get('dim')} but face.dim is {p.dim}; set face.dim to "
                        f"train_cf.dim (or 0) or rerun the train_cf stage")
    model, cfp = load_backbone(fp.pretrained, ds, device)
    return model, cfp


# ------------------------------------------------------------------------ training
@dataclass
class StageResult:
    """One early-stopped stage: best-validation metrics, test metrics, cost."""

    name: str
    best_epoch: int
    best_valid: dict[str, float]
    test: dict[str, float]
    epochs_run: int
    steps: int
    seconds: float
    cpu_seconds: float
    history: list[dict[str, Any]] = field(default_factory=list)
    test_per_user: PerUserMetrics | None = None

    def summary(self) -> dict[str, Any]:
        return {"best_epoch": self.best_epoch, "epochs_run": self.epochs_run,
                "steps": self.steps, "seconds": round(self.seconds, 2),
                "cpu_seconds": round(self.cpu_seconds, 2),
                "valid": self.best_valid, "test": self.test}


def train_stage(name: str, model: Backbone, face: FACE | None, ds: RecDataset,
                cfg: FitConfig, steps_per_epoch: int, rng: np.random.Generator,
                device: torch.device, evaluators: tuple[Evaluator, Evaluator],
                progress: bool = False, epoch_offset: int = 0) -> StageResult:
    """Train ``model`` (+ ``face`` as regulariser, or alone) with early stopping on
    validation Recall@20; leave the best state loaded and rank the test split with it.

    One epoch = every training pair with a fresh negative, shuffled, cut into batches of
    ``cfg.batch_size``, of which at most ``steps_per_epoch`` are used (0: all)."""
    modules: list[nn.Module] = [model] + ([face] if face is not None else [])
    regs = [face] if face is not None else []
    opt = make_optimizer(model, regs, cfg)
    sampler = BPRSampler(ds.train, ds.n_items)
    valid_eval, test_eval = evaluators
    best, best_epoch, bad, best_valid = -math.inf, 0, 0, {}
    best_state = snapshot(modules)
    history: list[dict[str, Any]] = []
    steps, t_start, c_start = 0, time.perf_counter(), time.process_time()
    batches = math.ceil(len(sampler) / cfg.batch_size)  # per full epoch
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=cfg.max_epochs, desc=f"{name} {model.name}", unit="epoch")
    for epoch in range(1, cfg.max_epochs + 1):
        for m in modules:
            m.train()
        t0 = time.perf_counter()
        try:
            losses = train_epoch(model, regs, opt, sampler, rng, cfg.batch_size, device,
                                 epoch, max_steps=steps_per_epoch)
        except TrainingError as exc:
            raise FaceError(f"{name}: {exc}; lower face.lr") from None
        steps += min(steps_per_epoch or batches, batches)
        means = {f"loss_{k}": v for k, v in losses.items()}
        row: dict[str, Any] = {"epoch": epoch_offset + epoch, "stage": name,
                               "stage_epoch": epoch, "loss": sum(means.values()), **means,
                               "valid_recall@20": math.nan, "valid_ndcg@20": math.nan,
                               "seconds": time.perf_counter() - t0}
        if epoch % cfg.eval_every == 0 or epoch == cfg.max_epochs:
            for m in modules:
                m.eval()
            metrics = valid_eval(model)
            row["valid_recall@20"], row["valid_ndcg@20"] = metrics["recall@20"], metrics["ndcg@20"]
            if metrics[SELECT] > best:
                best, best_epoch, best_valid, bad = metrics[SELECT], epoch, metrics, 0
                best_state = snapshot(modules)
            else:
                bad += 1
        history.append(row)
        if bar is not None:
            bar.update(1)
            bar.set_postfix(best=f"{best:.4f}@{best_epoch}")
        if bad >= cfg.patience:
            break
    if bar is not None:
        bar.close()
    for m, s in zip(modules, best_state, strict=True):
        m.load_state_dict(s)
        m.eval()
    per_user = test_eval.per_user(model)
    return StageResult(name, best_epoch, best_valid, per_user.mean(), len(history), steps,
                       time.perf_counter() - t_start, time.process_time() - c_start, history,
                       per_user)


# ------------------------------------------------------------------------ outputs
def save_face_checkpoint(path: Path, model: Backbone, face: FACE | None, p: FaceParams,
                         cf_params: Any, result: StageResult) -> Path:
    """Backbone + FACE state (no encoder weights), configs and the stage's results."""
    return save_checkpoint({
        "stage": result.name, "backbone": model.state_dict(),
        "face": face.state_dict() if face is not None else None,
        "face_config": asdict(face.config) if face is not None else None,
        "face_params": asdict(p), "cf_params": asdict(cf_params),
        "emb_dim": model.dim, "result": result.summary(), "history": result.history,
    }, path)


def load_face_checkpoint(path: Path, ds: RecDataset, codebook: torch.Tensor,
                         device: torch.device | str = "cpu") -> tuple[Backbone, FACE | None]:
    """Rebuild (backbone, FACE in map mode) from a face checkpoint; FACE is None for the
    control run. Descriptors: ``face.describe(backbone.embeddings_for_eval()[0])``."""
    from facelib.config import build
    from facelib.models import make_backbone
    from facelib.train import TrainCFParams

    ck = load_checkpoint(path, map_location=device)
    cfp = build(TrainCFParams, ck["cf_params"], "train_cf")
    model = make_backbone(cfp.backbone, ds.n_users, ds.n_items, cfp, ds.matrix("train"))
    model.load_state_dict(ck["backbone"])
    face = None
    if ck["face"] is not None:
        cfg = FACEConfig(**{**ck["face_config"], "stage": "map"})
        face = FACE(cfg, ck["emb_dim"], codebook)
        face.load_state_dict(ck["face"])
        face.to(device).eval()
    return model.to(device).eval(), face


def descriptor_table(model: Backbone, face: FACE, words: np.ndarray) -> pd.DataFrame:
    """entity (user/item), entity_id, concept (0..C-1), word: C rows per entity."""
    user_emb, item_emb = model.embeddings_for_eval()
    parts = []
    for kind, emb in (("user", user_emb), ("item", item_emb)):
        idx = face.describe(emb).cpu().numpy()  # [N, C]
        n, c = idx.shape
        parts.append(pd.DataFrame({"entity": kind, "entity_id": np.repeat(np.arange(n), c),
                                   "concept": np.tile(np.arange(c), n),
                                   "word": words[idx.ravel()]}))
    return pd.concat(parts, ignore_index=True)


def save_per_user(path: Path, results: dict[str, PerUserMetrics]) -> Path:
    """Per-user test metrics of every system, for paired tests: ``users`` [M] and one
    float64 [M] array per ``"<system>.<metric>"`` (systems base, map, face, control)."""
    from facelib.io import atomic_file

    users = next(iter(results.values())).users
    arrays: dict[str, np.ndarray] = {"users": users}
    for system, pu in results.items():
        if not np.array_equal(pu.users, users):
            raise FaceError(f"per-user metrics of {system} cover other users than the rest")
        arrays.update({f"{system}.{m}": v for m, v in pu.values.items()})
    with atomic_file(path, "wb") as fh:
        np.savez_compressed(fh, **arrays)
    return path


def write_descriptors(table: pd.DataFrame, path: Path) -> Path:
    """The descriptor table as CSV, written atomically."""
    from facelib.io import atomic_file

    with atomic_file(path) as fh:
        table.to_csv(fh, index=False)
    return path


# ------------------------------------------------------------------------ the stage
def run_face(p: FaceParams, progress: bool = False, publish: bool = False) -> dict[str, Any]:
    """FACE map + align and the control run on ``p.backbone``-``p.seed``; write the
    checkpoints, metrics JSON, logs and descriptors; return the metrics (+ histories)."""
    from facelib.io import write_json
    from facelib.text import FrozenEncoder, load_text_artifacts

    t_all, c_all = time.perf_counter(), time.process_time()
    if p.num_threads > 0:
        torch.set_num_threads(p.num_threads)
    device = resolve_device(p.device, "face")
    fp = face_paths(p, publish)
    ds = load_dataset(paths.processed_dir(p.dataset))
    art = load_text_artifacts(p.dataset)
    check_inputs(p, fp, ds, len(art.vocabulary), (len(art.user_emb), len(art.item_emb)))
    codebook = torch.from_numpy(art.codebook)
    words = art.vocabulary["word"].to_numpy()
    rng = seed_everything(p.seed)
    model, cfp = load_pretrained(p, fp, ds, device)
    cfg = {s: FitConfig(lr=p.lr, reg=cfp.reg, batch_size=p.batch_size, max_epochs=e,
                        eval_every=p.eval_every, patience=p.patience,
                        base_lr_scale=p.base_lr_scale, eval_batch_size=cfp.eval_batch_size)
           for s, e in (("map", p.map_max_epochs), ("align", p.align_max_epochs))}
    steps = {"map": p.map_steps_per_epoch, "align": p.align_steps_per_epoch}
    train_m = ds.matrix("train")
    evals = (Evaluator(train_m, ds.matrix("valid"), KS, cfp.eval_batch_size, device),
             Evaluator(train_m, ds.matrix("test"), KS, cfp.eval_batch_size, device))
    base_per_user = evals[1].per_user(model)
    base = {"test": base_per_user.mean(),
            "source": f"{fp.pretrained.name} (best-validation weights of train_cf)"}
    noun = ds.item_noun

    # map
    face = FACE(p.face_config("map", noun), model.dim, codebook).to(device)
    res_map = train_stage("map", model, face, ds, cfg["map"], steps["map"], rng, device,
                          evals, progress)
    save_face_checkpoint(fp.checkpoints["map"], model, face, p, cfp, res_map)
    write_descriptors(descriptor_table(model, face, words), fp.descriptors["map"])
    # align: strict load of the map state into an align-stage FACE
    t0 = time.perf_counter()
    encoder = FrozenEncoder.load(str(device))
    encoder_seconds = time.perf_counter() - t0
    face_a = FACE(p.face_config("align", noun), model.dim, codebook, encoder=encoder,
                  user_profiles=torch.from_numpy(art.user_emb),
                  item_profiles=torch.from_numpy(art.item_emb))
    face_a.load_state_dict(face.state_dict())
    face_a.to(device)
    res_align = train_stage("align", model, face_a, ds, cfg["align"], steps["align"], rng,
                            device, evals, progress, epoch_offset=res_map.epochs_run)
    save_face_checkpoint(fp.checkpoints["align"], model, face_a, p, cfp, res_align)
    write_descriptors(descriptor_table(model, face_a, words), fp.descriptors["align"])
    write_log(res_map.history + res_align.history, fp.logs["face"])
    per_user = {"base": base_per_user, "map": res_map.test_per_user,
                "face": res_align.test_per_user}

    # control: same schedule from the same pretrained state, no regulariser
    ctl_map = ctl_align = None
    if p.control:
        rng = seed_everything(p.seed)
        control, _ = load_pretrained(p, fp, ds, device)
        ctl_map = train_stage("map", control, None, ds, cfg["map"], steps["map"], rng,
                              device, evals, progress)
        ctl_align = train_stage("align", control, None, ds, cfg["align"], steps["align"],
                                rng, device, evals, progress,
                                epoch_offset=ctl_map.epochs_run)
        save_face_checkpoint(fp.checkpoints["control"], control, None, p, cfp, ctl_align)
        write_log(ctl_map.history + ctl_align.history, fp.logs["control"])
        per_user["control"] = ctl_align.test_per_user
    save_per_user(fp.per_user, per_user)

    metrics = {
        "dataset": p.dataset, "backbone": p.backbone, "seed": p.seed,
        "base": base,
        "face": {"test": res_align.test, "valid": res_align.best_valid,
                 "map": res_map.summary(), "align": res_align.summary()},
        "control": None if ctl_align is None or ctl_map is None else {
            "test": ctl_align.test, "valid": ctl_align.best_valid,
            "map": ctl_map.summary(), "align": ctl_align.summary()},
        "bounds": p.bounds(), "switches": {s: getattr(p, s) for s in REFERENCE_SWITCHES},
        "vocabulary_size": len(words), "profile_builder": art.meta.get("builder"),
        "emb_dim": model.dim, "cf_lr": cfp.lr, "reg": cfp.reg,
        "seconds": {"map": round(res_map.seconds, 2), "align": round(res_align.seconds, 2),
                    "control": (round(ctl_map.seconds + ctl_align.seconds, 2)
                                if ctl_align is not None and ctl_map is not None else 0.0),
                    "load_encoder": round(encoder_seconds, 2),
                    "cpu_total": round(time.process_time() - c_all, 2),
                    "total": round(time.perf_counter() - t_all, 2)},
        "device": str(device), "threads": torch.get_num_threads(),
        "params": asdict(p),
    }
    write_json(metrics, fp.metrics)
    history = {"face": res_map.history + res_align.history}
    if ctl_map is not None and ctl_align is not None:
        history["control"] = ctl_map.history + ctl_align.history
    return {**metrics, "history": history, "paths": fp}


# ------------------------------------------------------------------------ notebook helpers
def prepare_smoke_inputs(p: FaceParams, progress: bool = False) -> None:
    """Create what a standalone smoke run of ``p`` needs and is missing: the synthetic
    processed dataset, its text artifacts, and a tiny pretrained backbone (build/smoke)."""
    from facelib.config import build
    from facelib.data import DataParams, prepare_dataset
    from facelib.text import TextParams
    from facelib.text.stage import run_text_stage
    from facelib.train import TrainCFParams, run_train_cf

    if p.dataset == "synthetic" and not (paths.processed_dir(p.dataset) / "meta.json").exists():
        prepare_dataset(build(DataParams, {"dataset": "synthetic"}, "data"))
    if not (paths.text_dir(p.dataset) / "meta.json").exists():
        run_text_stage(build(TextParams, {"dataset": p.dataset, "device": "cpu"}, "text"),
                       progress)
    if not face_paths(p, publish=False).pretrained.is_file():
        values = {"dataset": p.dataset, "backbone": p.backbone, "seed": p.seed,
                  "dim": p.dim or 32, "layers": 2, "lr": 0.01, "batch_size": 256,
                  "max_epochs": 10, "eval_every": 2, "patience": 3, "device": "cpu"}
        run_train_cf(build(TrainCFParams, values, "train_cf"), progress, publish=False)


def metrics_table(metrics: dict[str, Any]) -> pd.DataFrame:
    """Test metrics of the base model, the control run and FACE: rows run, columns metric."""
    rows = {"base (train_cf)": metrics["base"]["test"]}
    if metrics.get("control"):
        rows["control (same schedule, no FACE)"] = metrics["control"]["test"]
    rows["FACE map only"] = metrics["face"]["map"]["test"]
    rows["FACE (map + align)"] = metrics["face"]["test"]
    return pd.DataFrame(rows).T[[f"{m}@{k}" for m in ("recall", "ndcg") for k in KS]]


def curves(metrics: dict[str, Any]) -> pd.DataFrame:
    """Per-epoch log of both runs in long form (run, stage, epoch, losses, validation)."""
    return pd.concat([pd.DataFrame(h).assign(run=r) for r, h in metrics["history"].items()],
                     ignore_index=True)


def _words(table: pd.DataFrame, kind: str) -> pd.Series:
    part = table[table.entity == kind].sort_values(["entity_id", "concept"])
    return part.groupby("entity_id")["word"].agg(", ".join)


def user_descriptors(ds: RecDataset, table: pd.DataFrame, users: list[int],
                     n_titles: int = 5) -> pd.DataFrame:
    """Users' liked training titles (first ``n_titles``) beside their descriptors."""
    liked = ds.user_items("train")
    titles = ds.items["title"] if "title" in ds.items else ds.items["raw_id"].astype(str)
    words = _words(table, "user")
    return pd.DataFrame({
        "liked (training)": ["; ".join(titles.iloc[liked[u][:n_titles]]) for u in users],
        "descriptors": [words[u] for u in users]}, index=pd.Index(users, name="user"))


def item_descriptors(ds: RecDataset, table: pd.DataFrame, items: list[int]) -> pd.DataFrame:
    """Items' title and genres beside their descriptors."""
    cols = [c for c in ("title", "genres") if c in ds.items]
    out = ds.items.loc[items, cols].copy()
    out["descriptors"] = _words(table, "item")[items].to_numpy()
    out.index.name = "item"
    return out
