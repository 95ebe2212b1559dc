"""The ``face`` stage: map, align and the control run on one pretrained backbone x seed.

Starting from the ``train_cf`` checkpoint of ``backbone``/``seed`` (its best-validation
weights), two runs of :func:`facelib.train.fit`, each a sequence of early-stopped phases::

    FACE     map    L = L_base + vq_weight L_vq + recons_weight L_rec        selects recall@20
             align  L = ... + align_weight L_align (frozen MiniLM forward and backward),
                    starting from the best map state                     selects align_select
    control  map, align: L = L_base alone, the same phases (same epochs per phase, steps
             per epoch, lr scale, early stopping on recall@20)

Adam groups: backbone at ``lr * base_lr_scale`` with the train_cf weight decay ``2*reg``,
FACE at ``lr`` without decay (:func:`facelib.train.make_optimizer`), a fresh optimiser per
phase. Scoring is always the backbone's dot product of its fine-tuned embeddings; the
reported FACE numbers are test metrics of the best state of the align phase.

Align rows and stopping (``face`` params): ``align_batch`` triples (the reference: the 3B
rows of each BPR batch, an epoch = a pass over the training interactions) or entities
(batches of ``align_batch_size`` distinct users and items, an epoch = a pass over them);
``align_holdout`` withholds users and items from the alignment (validation entities give the
``align_mrr`` signal, test entities are what the interpret stage reports on);
``align_select`` stops the align phase on validation recall@20 (the reference) or on
``align_mrr``. Bounds (0 = off, the paper): ``map_steps_per_epoch`` /
``align_steps_per_epoch`` cut an epoch short, ``align_entities`` aligns that many rows per
step. Every metrics JSON states the bounds and how each phase stopped.

Outputs (``publish=True``; with ``publish=False`` the same tree under ``build/smoke/``),
published together once both runs have finished:

- ``checkpoints/systems/face/<dataset>/<run>/{map,align,control}.pt``: backbone and FACE
  state dicts (never the encoder's weights), FACE config, history, metrics;
- ``reports/metrics/systems/face/<run>.json``: base, FACE (map, align) and control test
  metrics, per-phase epochs, steps, seconds and ``stopped_by``, bounds, switches;
- ``reports/logs/systems/face/<run>/{face,control}.csv``: one row per epoch;
- ``data/systems/face/<dataset>/<run>/descriptors[-map].csv``: entity, entity_id, split
  (train: aligned, valid, test), concept, word for every user and item, after align (and
  after map);
- ``data/systems/face/<dataset>/<run>/per_user.npz``: per-user test metrics of map, face
  and control (the base model's are in the train_cf stage's file).

``<run>`` is ``<backbone>-<seed>``.

The in-progress state of both runs lives in ``build/state/`` (``resume: true`` continues
an interrupted run there, also under ``dvc repro``). A non-empty ``tag`` (an ablation
variant) writes the same files under ``ablations/`` in place of ``face/``, named
``<backbone>-<seed>-<tag>``; ``control: false`` skips the control (and removes an older
run's control outputs).
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from facelib import paths
from facelib.config import ParamsError
from facelib.data import RecDataset, load_dataset
from facelib.data.errors import DataError
from facelib.device import resolve_device
from facelib.eval import KS, Evaluator
from facelib.io import StagedOutputs, atomic_file, write_json
from facelib.config import build
from facelib.models import Backbone, Regularizer, make_backbone
from facelib.seed import seed_everything
from facelib.systems.face.model.entities import EntitySplit, split_entities
from facelib.systems.face.model.module import FACE, REFERENCE_SWITCHES, FACEConfig
from facelib.systems.face.params import (ALIGN_SELECT, STARTS, FaceParams, FacePaths,
                                         face_paths)
from facelib.systems.joint import RegularizerFactory, profile_tensors
from facelib.systems.rlmrec.params import RLMRecParams
from facelib.systems.rlmrec.stage import factories as rlmrec_factories
from facelib.train import (FitConfig, FitResult, Phase, PhaseResult, TrainCFParams,
                           TrainingError, fit, load_backbone, save_checkpoint, save_per_user)
from facelib.train.checkpoint import load_checkpoint
from facelib.train.loop import load_states, snapshot, warning_flags, write_log


class FaceError(DataError):
    """An input of the face stage is missing or does not fit (one-line message)."""


# ------------------------------------------------------------------------ inputs
def check_inputs(p: FaceParams, fp: FacePaths, ds: RecDataset, vocab_size: int,
                 text_shape: tuple[int, int]) -> None:
    """One-line errors before any training: vocabulary size, checkpoint, dimensions."""
    if p.word_num > vocab_size:
        raise ParamsError(f"params [face.word_num]: {p.word_num} is larger than the "
                          f"vocabulary ({vocab_size} words in data/text/{p.dataset}); "
                          f"choose word_num <= {vocab_size}")
    if not fp.pretrained.is_file():
        stage = "train_cf" if STARTS[p.start] is None else STARTS[p.start][0]
        raise FaceError(f"no pretrained {p.backbone} checkpoint at {fp.pretrained}; run the "
                        f"{stage} stage first (python -m facelib.pipeline {stage} "
                        f"--set backbone={p.backbone} --set seed={p.seed})")
    if text_shape != (ds.n_users, ds.n_items):
        raise FaceError(f"text artifacts of {p.dataset} have {text_shape[0]} users x "
                        f"{text_shape[1]} items but the dataset {ds.n_users} x {ds.n_items}; "
                        f"run the text stage again")


def load_pretrained(p: FaceParams, fp: FacePaths, ds: RecDataset,
                    device: torch.device) -> tuple[Backbone, Any]:
    """The pretrained backbone (best-validation weights) and its train_cf parameters;
    refuses a checkpoint of another run or one whose test metrics differ from the metrics
    JSON published beside it (a stale or mixed train_cf output)."""
    ck = load_checkpoint(fp.pretrained, made_by="train_cf")
    run = ck.get("run_params", {})
    if run.get("backbone") != p.backbone or run.get("seed") != p.seed:
        raise FaceError(f"checkpoint {fp.pretrained} holds {run.get('backbone')}-"
                        f"{run.get('seed')}, not {p.backbone}-{p.seed}; rerun the train_cf "
                        f"stage (dvc repro train_cf)")
    if p.dim and run.get("dim") != p.dim:
        raise FaceError(f"dimension mismatch: checkpoint {fp.pretrained} has embedding size "
                        f"{run.get('dim')} but face.dim is {p.dim}; set face.dim to "
                        f"train_cf.dim (or 0) or rerun the train_cf stage")
    if fp.pretrained_metrics.is_file():
        published = json.loads(fp.pretrained_metrics.read_text()).get("test")
        if published != ck.get("test"):
            raise FaceError(f"checkpoint {fp.pretrained} does not belong to the run of "
                            f"{fp.pretrained_metrics} (their test metrics differ); rerun the "
                            f"train_cf stage (dvc repro train_cf)")
    return load_backbone(fp.pretrained, ds, device)


# the jointly trained systems FACE can start from: their params class and regularisers
START_SYSTEMS: dict[str, tuple[type, Any]] = {"rlmrec": (RLMRecParams, rlmrec_factories)}


def load_start(p: FaceParams, fp: FacePaths, ds: RecDataset, device: torch.device
               ) -> tuple[Backbone, TrainCFParams, tuple[Regularizer, ...]]:
    """The model FACE starts from (best-validation weights), its train_cf parameters and
    the regularisers that stay on: none for ``start: train_cf``; for a jointly trained
    system's run, its regulariser with its trained weights. Refuses a checkpoint of another
    run, or one whose test metrics differ from the metrics JSON published beside it."""
    if STARTS[p.start] is None:
        model, cfp = load_pretrained(p, fp, ds, device)
        return model, cfp, ()
    system, variant = STARTS[p.start]
    rerun = (f"rerun it: python -m facelib.pipeline {system} --set backbone={p.backbone} "
             f"--set seed={p.seed}")
    ck = load_checkpoint(fp.pretrained, made_by=system)
    own = ck.get("params", {})
    if (ck.get("stage"), ck.get("variant"), own.get("backbone"), own.get("seed")) != (
            system, variant, p.backbone, p.seed):
        raise FaceError(f"checkpoint {fp.pretrained} is not the {system} {variant} run of "
                        f"{p.backbone}-{p.seed}; {rerun}")
    if fp.pretrained_metrics.is_file():
        published = (json.loads(fp.pretrained_metrics.read_text()).get(variant) or {})
        if published.get("test") != ck["result"]["test"]:
            raise FaceError(f"checkpoint {fp.pretrained} does not belong to the run of "
                            f"{fp.pretrained_metrics} (their test metrics differ); {rerun}")
    cf = {k: v for k, v in ck["cf_params"].items() if k not in ("data", "phases")}
    cfp = build(TrainCFParams, cf, "train_cf")
    model = make_backbone(cfp.backbone, ds.n_users, ds.n_items, cfp, ds.matrix("train"))
    model.load_state_dict(ck["backbone"])
    params_cls, factories = START_SYSTEMS[system]
    make: RegularizerFactory = factories(build(params_cls, own, system))[variant]
    user_prf, item_prf, _ = profile_tensors(p.dataset, ds)
    reg = make(user_prf, item_prf, model.dim, cfp.reg)
    reg.load_state_dict(ck["regularizer"])
    return model.to(device).eval(), cfp, (reg.to(device),)


# ------------------------------------------------------------------------ training
def face_phases(p: FaceParams, face: FACE, enter_align: Any,
                kept: tuple[Regularizer, ...] = ()) -> list[Phase]:
    """The FACE run: map (recall@20) then align (``align_select``), one FACE module, beside
    the start's ``kept`` regularisers."""
    return [Phase("map", p.map_max_epochs, (face, *kept), p.map_steps_per_epoch,
                  keep_state=True),
            Phase("align", p.align_max_epochs, (face, *kept), p.align_steps_per_epoch,
                  select=ALIGN_SELECT[p.align_select], start=enter_align)]


def control_phases(p: FaceParams, align_steps: int,
                   kept: tuple[Regularizer, ...] = ()) -> list[Phase]:
    """The control run: the same two phases without FACE (``align_steps`` per align epoch:
    FACE's number of entity batches, or the triples bound), the start's ``kept``
    regularisers still on."""
    return [Phase("map", p.map_max_epochs, kept, p.map_steps_per_epoch),
            Phase("align", p.align_max_epochs, kept, align_steps)]


def _train(model: Backbone, ds: RecDataset, cfg: FitConfig, p: FaceParams,
           rng: np.random.Generator, phases: list[Phase], state: Path,
           run_params: dict[str, Any], device: torch.device, progress: bool) -> FitResult:
    try:
        return fit(model, ds, cfg, rng, phases=phases, device=device,
                   checkpoint_path=state, resume=p.resume and state.is_file(),
                   run_params=run_params, progress=progress)
    except TrainingError as exc:
        raise FaceError(f"{exc}; lower face.lr") from None


# ------------------------------------------------------------------------ outputs
def face_checkpoint(model: Backbone, face: FACE | None, p: FaceParams, cf_params: Any,
                    result: PhaseResult, history: list[dict[str, Any]]) -> dict[str, Any]:
    """Backbone + FACE state (copies; no encoder weights), configs and the phase's
    results."""
    return {"stage": result.name, "backbone": snapshot([model])[0],
            "face": snapshot([face])[0] if face is not None else None,
            "face_config": asdict(face.config) if face is not None else None,
            "face_params": asdict(p), "cf_params": asdict(cf_params),
            "emb_dim": model.dim, "result": result.summary(), "history": history}


def load_face_checkpoint(path: Path, ds: RecDataset, codebook: torch.Tensor,
                         device: torch.device | str = "cpu") -> tuple[Backbone, FACE | None]:
    """Rebuild (backbone, FACE in map mode) from a face checkpoint; FACE is None for the
    control run. Descriptors: ``face.describe(backbone.embeddings_for_eval()[0])``."""
    from facelib.config import build
    from facelib.models import make_backbone
    from facelib.train import TrainCFParams

    ck = load_checkpoint(path, map_location=device, made_by="face")
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


def descriptor_table(model: Backbone, face: FACE, words: np.ndarray,
                     entities: EntitySplit | None = None) -> pd.DataFrame:
    """entity (user/item), entity_id, split (train = aligned, valid, test), concept
    (0..C-1), word: C rows per entity."""
    user_emb, item_emb = model.embeddings_for_eval()
    parts = []
    for kind, emb in (("user", user_emb), ("item", item_emb)):
        idx = face.describe(emb).cpu().numpy()  # [N, C]
        n, c = idx.shape
        split = (entities.part_of(kind, n) if entities is not None
                 else np.full(n, "train", dtype=object))
        parts.append(pd.DataFrame({"entity": kind, "entity_id": np.repeat(np.arange(n), c),
                                   "split": np.repeat(split, c),
                                   "concept": np.tile(np.arange(c), n),
                                   "word": words[idx.ravel()]}))
    return pd.concat(parts, ignore_index=True)


def write_descriptors(table: pd.DataFrame, path: Path) -> Path:
    """The descriptor table as CSV, written atomically."""
    with atomic_file(path) as fh:
        table.to_csv(fh, index=False)
    return path


# ------------------------------------------------------------------------ the stage
def run_face(p: FaceParams, progress: bool = False, publish: bool = False) -> dict[str, Any]:
    """FACE map + align and the control run on ``p.backbone``-``p.seed``; publish the
    checkpoints, metrics JSON, logs and descriptors together; return the metrics (+
    histories)."""
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
    model, cfp, kept = load_start(p, fp, ds, device)
    cfg = FitConfig(lr=p.lr, reg=cfp.reg, batch_size=p.batch_size, max_epochs=1,
                    eval_every=p.eval_every, patience=p.patience,
                    base_lr_scale=p.base_lr_scale, eval_batch_size=cfp.eval_batch_size)
    base = Evaluator(ds.matrix("train"), ds.matrix("test"), KS, cfp.eval_batch_size,
                     device)(model)
    entities = (split_entities(ds.n_users, ds.n_items, p.align_holdout,
                               int(ds.meta.get("seed", 0)))
                if p.align_holdout > 0 else None)
    start_ck = load_checkpoint(fp.pretrained)
    run_params = {**asdict(p), "cf": start_ck.get("run_params", start_ck.get("cf_params"))}
    for key in ("resume", "num_threads", "control", "device"):
        run_params.pop(key)

    # FACE: map, then align (the encoder is loaded when the align phase starts)
    rng = seed_everything(p.seed)
    face = FACE(p.face_config(ds.item_noun), model.dim, codebook).to(device)
    encoder_seconds = [0.0]

    def enter_align() -> None:
        t0 = time.perf_counter()
        face.enter_align(FrozenEncoder.load(str(device)), torch.from_numpy(art.user_emb),
                         torch.from_numpy(art.item_emb), entities)
        encoder_seconds[0] += time.perf_counter() - t0

    res = _train(model, ds, cfg, p, rng, face_phases(p, face, enter_align, kept),
                 fp.state["face"], run_params, device, progress)
    res_map, res_align = res.phase("map"), res.phase("align")
    trained = [model, face, *kept]  # the modules the phases trained, in fit's order
    align_state = snapshot(trained)
    table = {"align": descriptor_table(model, face, words, entities)}
    assert res_map.state is not None
    load_states(trained, res_map.state)
    table["map"] = descriptor_table(model, face, words, entities)
    ck = {"map": face_checkpoint(model, face, p, cfp, res_map, res.history)}
    load_states(trained, align_state)
    ck["align"] = face_checkpoint(model, face, p, cfp, res_align, res.history)
    per_user = {"map": res_map.test_per_user, "face": res_align.test_per_user}

    # control: the same phases from the same pretrained state, no plug-in
    ctl: FitResult | None = None
    if p.control:
        rng = seed_everything(p.seed)
        control, _, control_kept = load_start(p, fp, ds, device)
        align_steps = p.align_steps_per_epoch
        if face.batches is not None:
            align_steps = face.batches.steps()
        ctl = _train(control, ds, cfg, p, rng, control_phases(p, align_steps, control_kept),
                     fp.state["control"], run_params, device, progress)
        ck["control"] = face_checkpoint(control, None, p, cfp, ctl.last, ctl.history)
        per_user["control"] = ctl.test_per_user

    phases = {"map": res_map.summary(), "align": res_align.summary()}
    metrics = {
        "dataset": p.dataset, "backbone": p.backbone, "seed": p.seed,
        "base": {"test": base, "source": f"{fp.pretrained.name} (best-validation weights of "
                                          f"{p.start})"},
        "start": p.start,
        "face": {"test": res_align.test, "valid": res_align.best_valid, **phases},
        "control": None if ctl is None else {
            "test": ctl.test, "valid": ctl.best_valid,
            **{ph.name: ph.summary() for ph in ctl.phases}},
        "stopped_by": ("cap" if res.stopped_by == "cap" or (ctl and ctl.stopped_by == "cap")
                       else "early_stopping"),
        "flags": sorted(set(warning_flags(res.history)
                            + (warning_flags(ctl.history) if ctl is not None else []))),
        "entities": None if entities is None else {
            "holdout": p.align_holdout,
            **{f"{kind}s_{part}": int(len(ids[part])) for kind, ids in
               (("user", entities.users), ("item", entities.items))
               for part in ("train", "valid", "test")}},
        "align_steps_per_epoch": (face.batches.steps() if face.batches is not None
                                  else p.align_steps_per_epoch),
        "bounds": p.bounds(), "switches": {s: getattr(p, s) for s in REFERENCE_SWITCHES},
        "vocabulary_size": len(words), "profile_builder": art.meta.get("builder"),
        "emb_dim": model.dim, "cf_lr": cfp.lr, "reg": cfp.reg,
        "seconds": {"map": round(res_map.seconds, 2), "align": round(res_align.seconds, 2),
                    "control": (round(sum(ph.seconds for ph in ctl.phases), 2)
                                if ctl is not None else 0.0),
                    "load_encoder": round(encoder_seconds[0], 2),
                    "cpu_total": round(time.process_time() - c_all, 2),
                    "total": round(time.perf_counter() - t_all, 2)},
        "device": str(device), "threads": torch.get_num_threads(),
        "params": asdict(p),
    }
    with StagedOutputs(paths.repo_root() / "build") as staged:
        for name, state in ck.items():
            save_checkpoint(state, staged(fp.checkpoints[name]))
        for name, t in table.items():
            write_descriptors(t, staged(fp.descriptors[name]))
        write_log(res.history, staged(fp.logs["face"]))
        if ctl is not None:
            write_log(ctl.history, staged(fp.logs["control"]))
        save_per_user(staged(fp.per_user), per_user)
        write_json(metrics, staged(fp.metrics))
        staged.publish(stale=[fp.checkpoints["control"], fp.logs["control"]])
    history = {"face": res.history}
    if ctl is not None:
        history["control"] = ctl.history
    return {**metrics, "history": history, "paths": fp}


# ------------------------------------------------------------------------ notebook helpers
def prepare_smoke_inputs(p: FaceParams, progress: bool = False) -> None:
    """Create what a standalone smoke run of ``p`` needs and is missing: the synthetic
    processed dataset, its text artifacts, and a tiny pretrained backbone (build/smoke)."""
    from facelib.config import build
    from facelib.data import DataParams, prepare_dataset
    from facelib.text import TextError, TextParams, load_text_artifacts
    from facelib.text.stage import run_text_stage
    from facelib.train import TrainCFParams, run_train_cf

    if p.dataset == "synthetic" and not (paths.processed_dir(p.dataset) / "meta.json").exists():
        prepare_dataset(build(DataParams, {"dataset": "synthetic"}, "data"))
    try:
        load_text_artifacts(p.dataset)
    except TextError:  # missing, or written by an older version
        run_text_stage(build(TextParams, {"dataset": p.dataset, "device": "cpu"}, "text"),
                       progress)
    if not face_paths(p, publish=False).pretrained.is_file():
        values = {"dataset": p.dataset, "backbone": p.backbone, "seed": p.seed,
                  "dim": p.dim or 32, "layers": 2, "lr": 0.01, "batch_size": 256,
                  "max_epochs": 10, "eval_every": 2, "patience": 3, "device": "cpu"}
        run_train_cf(build(TrainCFParams, values, "train_cf"), progress, publish=False)


def ensure_smoke_run(p: FaceParams, progress: bool = False) -> None:
    """For an unpublished study of a FACE run (the notebooks' smoke defaults): train ``p``
    under ``build/smoke`` unless a finished run with exactly these face params is there.
    The face notebook and each study share that folder with their own smoke params, so a
    run left by another one is retrained rather than read as this one."""
    files = face_paths(p, publish=False)
    ck = files.checkpoints["align"]
    if (ck.is_file() and files.metrics.is_file()
            and load_checkpoint(ck).get("face_params") == asdict(p)):
        return
    prepare_smoke_inputs(p, progress)
    run_face(p, progress=progress, publish=False)


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
