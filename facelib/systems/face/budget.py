"""FACE's alignment budget curve: what more alignment does to the ranking and the words.

Starting from the main study's map checkpoint of one run (``budget.backbone`` /
``budget.seed``, default LightGCN seed 0) with the ``face`` section's parameters, the align
phase trains for ``max(passes)`` passes over the aligned entities (``align_batch:
entities``), with no early stopping, and after every ``unit`` of a pass (the smallest
positive budget, e.g. a quarter) measures the *current* state:

- test Recall@20 and NDCG@20 (full ranking, the study's protocol);
- descriptor -> profile retrieval MRR of the held-out *test* users and items (entities the
  alignment never saw), beside the same for random words (the floor) and for the nearest
  words to each profile (a reference that reads the profile);
- the number of distinct words all users and items use;
- the align loss: the training term of the last steps, and on the held-out test entities.

The validation history (recall@20, ``align_mrr``, the align loss of the held-out validation
entities), replayed at whole passes so that ``face.patience`` counts passes as in the study,
gives where each stopping rule of the align stage (``face.align_select``) would have
stopped, and the main run's metrics JSON where the study's own run did. Outputs: ``reports/budget/budget.json``
and ``reports/budget/budget.png`` (under ``build/smoke`` for an unpublished run).
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from facelib import paths
from facelib.config import ParamsError, build, dataset_param, device_param, param, threads_param
from facelib.data import load_dataset
from facelib.data.errors import DataError
from facelib.device import resolve_device
from facelib.eval import KS, Evaluator
from facelib.io import StagedOutputs, save_figure, write_json
from facelib.models.registry import BACKBONES
from facelib.seed import seed_everything
from facelib.systems.face.model.entities import split_entities
from facelib.systems.face.model.prompt import ITEM, USER
from facelib.systems.face.params import FaceParams, face_paths
from facelib.train import FitConfig, Phase, fit
from facelib.train.checkpoint import load_checkpoint
from facelib.train.stage import output_root

SELECT_KEYS = {"recall@20": "valid_recall@20", "align_mrr": "valid_align_mrr",
               "align_loss": "-valid_align_loss"}


class BudgetError(DataError):
    """An input of the budget stage is missing or does not fit (one-line message)."""


@dataclass(frozen=True)
class BudgetParams:
    """``params.yaml`` section ``budget`` (FACE's own parameters: the ``face`` section)."""

    dataset: str = dataset_param()
    backbone: str = param("lightgcn", choices=BACKBONES, help="the main run to continue")
    seed: int = param(0, ge=0, help="its seed")
    passes: list[float] = param([0.0, 0.25, 1.0, 4.0, 16.0, 48.0], ge=0.0,
                                help="alignment budgets marked on the curve, in passes over "
                                     "the aligned entities; the run trains to the largest")
    face_overrides: dict = param({}, help="face keys to change for this run (smoke runs)")
    device: str = device_param("cpu")
    num_threads: int = threads_param()

    def __post_init__(self) -> None:
        if not self.passes or max(self.passes) <= 0:
            raise ParamsError("params [budget.passes]: give at least one budget > 0")

    @property
    def unit(self) -> float:
        """The measurement step, in passes: the smallest positive budget, at most 1."""
        return min(1.0, min(p for p in self.passes if p > 0))


@dataclass
class BudgetResult:
    """The curve (one row per measurement), the levels, the rules' stops, and paths."""

    rows: list[dict[str, Any]]
    levels: dict[str, dict[str, float]]
    stops: dict[str, dict[str, Any]]
    study: dict[str, Any]
    meta: dict[str, Any] = field(default_factory=dict)
    paths: dict[str, Path] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {"rows": self.rows, "levels": self.levels, "stops": self.stops,
                "study": self.study, **self.meta}


def face_params(bp: BudgetParams, section: dict[str, Any]) -> FaceParams:
    """The ``face`` section (``section``) for the budget's run, with its overrides."""
    values = {**section, **bp.face_overrides, "dataset": bp.dataset,
              "backbone": bp.backbone, "seed": bp.seed, "tag": "", "control": False}
    fp = build(FaceParams, values, "face")
    if fp.align_batch != "entities" or fp.align_holdout <= 0:
        raise ParamsError("params [face]: the budget curve counts passes over entities and "
                          "measures held-out ones; set face.align_batch: entities and "
                          "face.align_holdout > 0")
    return fp


def stop_epochs(history: list[dict[str, Any]], key: str, patience: int) -> dict[str, Any]:
    """Replay early stopping on one validation key of ``history`` (one row per epoch):
    the epoch it would stop at and the epoch it would select (None: never stops); a
    leading ``-`` on ``key``: lower is better."""
    sign = -1.0 if key.startswith("-") else 1.0
    best, best_epoch, bad = -math.inf, 0, 0
    for row in history:
        value = sign * row.get(key.lstrip("-"), math.nan)
        if value > best:
            best, best_epoch, bad = value, row["phase_epoch"], 0
        else:
            bad += 1
        if bad >= patience:
            return {"stop": row["phase_epoch"], "selected": best_epoch}
    return {"stop": None, "selected": best_epoch}


def rule_stop(history: list[dict[str, Any]], key: str, patience: int,
              unit: float) -> dict[str, Any]:
    """Where a stopping rule would end the align stage, in passes: early stopping replayed
    on the measurements at whole passes only (``history`` has one row per ``unit`` of a
    pass), so that ``patience`` counts passes as it does in the study's runs."""
    per_pass = max(1, round(1 / unit))
    whole = [r for r in history if r["phase_epoch"] % per_pass == 0]
    s = stop_epochs(whole, key, patience)
    return {k: (None if v is None else round(v * unit, 6)) for k, v in s.items()}


def reference_levels(face: Any, words_emb: np.ndarray, art: Any, entities: Any,
                     seed: int) -> dict[str, dict[str, float]]:
    """Profile-retrieval MRR of the test entities for random words and nearest words."""
    from facelib.systems.face.interpret.descriptors import nearest_words

    out: dict[str, dict[str, float]] = {"random": {}, "nearest": {}}
    gen = np.random.default_rng(seed)
    c, v = face.config.word_num, len(words_emb)
    for kind, ids, prof in (("user", entities.users["test"], art.user_emb),
                            ("item", entities.items["test"], art.item_emb)):
        code = USER if kind == "user" else ITEM
        profiles = torch.from_numpy(prof).float()
        variants = {"random": np.stack([gen.choice(v, c, replace=False) for _ in ids]),
                    "nearest": nearest_words(prof[ids], words_emb, c)}
        for name, idx in variants.items():
            kinds = torch.full((len(ids),), code, dtype=torch.long)
            text = face.encode_descriptors(torch.from_numpy(idx), kinds)  # [n, d_s]
            sims = text @ torch.nn.functional.normalize(profiles, dim=-1).T
            own = sims[torch.arange(len(ids)), torch.from_numpy(ids)]
            ranks = (sims > own[:, None]).sum(1) + 1
            out[name][f"mrr_{kind}"] = float((1.0 / ranks.double()).mean())
    return out


def run_budget(bp: BudgetParams, section: dict[str, Any], progress: bool = False,
               publish: bool = False) -> BudgetResult:
    """Continue the main run's map state through ``max(bp.passes)`` passes of alignment,
    measuring the current state after every ``bp.unit`` of a pass; write the JSON and the
    figure (``publish``: under ``reports/budget/``, else ``build/smoke/``)."""
    from facelib.systems.face.stage import load_face_checkpoint
    from facelib.text import FrozenEncoder, load_text_artifacts

    t_all = time.perf_counter()
    if bp.num_threads > 0:
        torch.set_num_threads(bp.num_threads)
    device = resolve_device(bp.device, "budget")
    fp = face_params(bp, section)
    files = face_paths(fp, publish)
    ds = load_dataset(paths.processed_dir(bp.dataset))
    art = load_text_artifacts(bp.dataset)
    map_ck = files.checkpoints["map"]
    if not map_ck.is_file():
        raise BudgetError(f"no map checkpoint at {map_ck}; run the main FACE run first: "
                          f"dvc repro regularize@face-{bp.backbone}-{bp.seed}")
    trained = load_checkpoint(map_ck, made_by="regularize")["face_params"]
    keys = ("word_num", "word_dim", "ffn_dim", "lr", "batch_size", "patience", "vq_weight",
            "recons_weight", "map_max_epochs", "map_steps_per_epoch")
    differ = [k for k in keys if trained.get(k) != getattr(fp, k)]
    if differ:
        raise BudgetError(f"the map checkpoint {map_ck} was trained with other face params "
                          f"({', '.join(differ)}); rerun it: dvc repro regularize")
    codebook = torch.from_numpy(art.codebook)
    model, face = load_face_checkpoint(map_ck, ds, codebook, device)
    assert face is not None
    entities = split_entities(ds.n_users, ds.n_items, fp.align_holdout,
                              int(ds.meta.get("seed", 0)))
    encoder = FrozenEncoder.load(str(device))
    face.enter_align(encoder, torch.from_numpy(art.user_emb), torch.from_numpy(art.item_emb),
                     entities)
    assert face.batches is not None
    levels = reference_levels(face, art.word_emb, art, entities, bp.seed)

    unit = bp.unit
    steps = 0 if unit >= 1 else max(1, math.ceil(face.batches.steps() * unit))
    epochs = math.ceil(max(bp.passes) / unit - 1e-9)
    test_eval = Evaluator(ds.matrix("train"), ds.matrix("test"), KS,
                          2048, device)
    rows: list[dict[str, Any]] = []

    def measure(passes: float, row: dict[str, Any] | None) -> None:
        for m in (model, face):
            m.eval()
        test = test_eval(model)
        quality = face.descriptor_quality(model, "test")
        with torch.no_grad():
            user_emb, item_emb = model.embeddings_for_eval()
            used = torch.cat([face.describe(user_emb), face.describe(item_emb)]).unique()
        rows.append({
            "passes": round(passes, 6), "recall@20": test["recall@20"],
            "ndcg@20": test["ndcg@20"], "mrr_user": quality["align_mrr_user"],
            "mrr_item": quality["align_mrr_item"], "words_used": int(used.numel()),
            "align_loss_test": quality["align_loss"],
            "align_loss_train": (row["loss_align"] / fp.align_weight
                                 if row is not None and fp.align_weight > 0 else math.nan),
            "valid_recall@20": row["valid_recall@20"] if row is not None else math.nan,
            "valid_align_mrr": row.get("valid_align_mrr", math.nan) if row else math.nan})

    measure(0.0, None)
    rng = seed_everything(bp.seed)
    cfg = FitConfig(lr=fp.lr, reg=float(load_checkpoint(map_ck)["cf_params"]["reg"]),
                    batch_size=fp.batch_size, max_epochs=epochs, eval_every=1,
                    patience=epochs + 1, base_lr_scale=fp.base_lr_scale)
    history: list[dict[str, Any]] = []

    def after_epoch(row: dict[str, Any]) -> None:
        history.append(row)
        measure(row["phase_epoch"] * unit, row)

    fit(model, ds, cfg, rng, device=device, progress=progress, callback=after_epoch,
        phases=[Phase("align", epochs, (face,), steps, select="align_mrr")])
    stops = {rule: rule_stop(history, key, fp.patience, unit)
             for rule, key in SELECT_KEYS.items()}
    study = _study_run(fp, publish)
    out = BudgetResult(rows=rows, levels=levels, stops=stops, study=study, meta={
        "dataset": bp.dataset, "backbone": bp.backbone, "seed": bp.seed, "unit": unit,
        "passes": list(bp.passes), "patience": fp.patience, "align_select": fp.align_select,
        "aligned_entities": face.batches.n_entities,
        "test_entities": {"users": len(entities.users["test"]),
                          "items": len(entities.items["test"])},
        "steps_per_measurement": steps or face.batches.steps(),
        "seconds": round(time.perf_counter() - t_all, 1), "params": asdict(bp),
        "face_params": asdict(fp)})
    root = output_root(publish) / "reports" / "budget"
    out.paths = {"json": root / "budget.json", "figure": root / "budget.png"}
    fig = budget_figure(out)
    with StagedOutputs(paths.repo_root() / "build") as staged:
        write_json(out.to_json(), staged(out.paths["json"]))
        save_figure(fig, staged(out.paths["figure"]))
        staged.publish()
    return out


def _study_run(fp: FaceParams, publish: bool) -> dict[str, Any]:
    """Where the main study's own run of this backbone and seed stopped its align phase."""
    import json

    path = face_paths(fp, publish).metrics
    if not path.is_file():
        return {}
    m = json.loads(path.read_text())
    align = m["face"]["align"]
    return {"align_epochs": align["epochs_run"], "align_best_epoch": align["best_epoch"],
            "align_stopped_by": align["stopped_by"],
            "align_select": m["params"]["align_select"], "test": m["face"]["test"]}


def budget_figure(res: BudgetResult) -> Any:
    """Four panels against passes over the entities: test ranking, profile retrieval of
    held-out entities (with the random and nearest-words levels), words used, align loss;
    dashed verticals where each stopping rule stops, solid where the study's run did."""
    import matplotlib.pyplot as plt
    import pandas as pd

    df = pd.DataFrame(res.rows)
    fig, axes = plt.subplots(2, 2, figsize=(11, 7))
    ax = axes[0, 0]
    ax.plot(df.passes, df["recall@20"], marker=".", label="Recall@20")
    ax.plot(df.passes, df["ndcg@20"], marker=".", label="NDCG@20")
    ax.set(title="test ranking (current state)", ylabel="metric")
    ax = axes[0, 1]
    for kind, color in (("user", "C0"), ("item", "C1")):
        ax.plot(df.passes, df[f"mrr_{kind}"], marker=".", color=color, label=f"FACE, {kind}s")
        ax.axhline(res.levels["random"][f"mrr_{kind}"], color=color, ls=":", lw=1,
                   label=f"random words, {kind}s")
        ax.axhline(res.levels["nearest"][f"mrr_{kind}"], color=color, ls="--", lw=1,
                   label=f"nearest words, {kind}s")
    ax.set(title="profile retrieval of held-out test entities", ylabel="MRR", yscale="log")
    ax = axes[1, 0]
    ax.plot(df.passes, df.words_used, marker=".", color="C2")
    ax.set(title="distinct words used (all users and items)", ylabel="words")
    ax = axes[1, 1]
    ax.plot(df.passes, df.align_loss_train, marker=".", label="train (last steps)")
    ax.plot(df.passes, df.align_loss_test, marker=".", label="held-out test entities")
    ax.set(title="align loss (InfoNCE, unweighted)", ylabel="loss")
    for ax in axes.ravel():
        ax.set_xscale("symlog", linthresh=res.meta["unit"])
        ax.set_xlim(-res.meta["unit"] / 4, df.passes.max() * 1.05)  # no negative margin
        ax.set_xlabel("passes over the aligned entities")
        for i, (rule, s) in enumerate(res.stops.items()):
            if s["stop"] is not None:
                ax.axvline(s["stop"], color=f"C{4 + i}", ls="--", lw=1,
                           label=f"{rule} rule stops")
        if res.study:
            ax.axvline(res.study["align_epochs"], color="k", lw=1, label="the study's run")
    axes[0, 0].legend(fontsize=7)
    axes[0, 1].legend(fontsize=6, ncol=2)
    axes[1, 1].legend(fontsize=7)
    fig.suptitle(f"{res.meta['dataset']}: FACE alignment budget ({res.meta['backbone']}, "
                 f"seed {res.meta['seed']})")
    fig.tight_layout()
    return fig


def budget_sentence(res: dict[str, Any]) -> str:
    """Where the study's run sits on the curve, written from the numbers."""
    rows = res["rows"]
    first, last = rows[0], rows[-1]
    parts = [f"Over {last['passes']:g} passes of alignment ({res['dataset']}, "
             f"{res['backbone']} seed {res['seed']}), test Recall@20 went from "
             f"{first['recall@20']:.4f} to {last['recall@20']:.4f}, the held-out users' "
             f"profile-retrieval MRR from {first['mrr_user']:.4f} to {last['mrr_user']:.4f} "
             f"(random words {res['levels']['random']['mrr_user']:.4f}, nearest words "
             f"{res['levels']['nearest']['mrr_user']:.4f}) and the items' from "
             f"{first['mrr_item']:.4f} to {last['mrr_item']:.4f} (random "
             f"{res['levels']['random']['mrr_item']:.4f}, nearest "
             f"{res['levels']['nearest']['mrr_item']:.4f})"]
    stops = [f"the {rule} rule stops after {s['stop']:g} passes" if s["stop"] is not None
             else f"the {rule} rule does not stop within the curve"
             for rule, s in res["stops"].items()]
    parts.append("; ".join(stops))
    study = res.get("study")
    if study:
        parts.append(f"the study's own run ({study['align_select']} rule) stopped its align "
                     f"stage after {study['align_epochs']} passes "
                     f"({study['align_stopped_by'].replace('_', ' ')})")
    return "; ".join(parts) + "."


def prepare_smoke_run(bp: BudgetParams, section: dict[str, Any], progress: bool = False) -> None:
    """For an unpublished run: the synthetic inputs and a tiny main FACE run (its map
    checkpoint) under ``build/smoke`` unless one with the same face params is there."""
    from facelib.systems.face.stage import ensure_smoke_run

    ensure_smoke_run(face_params(bp, section), progress)
