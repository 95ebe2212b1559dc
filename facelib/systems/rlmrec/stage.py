"""The ``rlmrec`` stage: RLMRec-Con and RLMRec-Gen on one backbone x seed, from scratch.

RLMRec trains the backbone *with* its regulariser end to end, without pre-training. So,
unlike the face stage (which fine-tunes the ``train_cf`` checkpoint), each variant here is
a fresh run of :func:`facelib.train.fit` with one phase::

    con   L = L_bpr (+ backbone terms) + kd_weight L_con (+ reg Σ‖σ↓‖²)     selects recall@20
    gen   L = L_bpr (+ backbone terms) + recon_weight L_gen (+ reg Σ‖m, σ↑‖²)  (masked ego)

The ``train_cf`` run of the same backbone and seed is the base model and is mirrored
exactly: its checkpoint gives the backbone's parameters (d, layers, keep rate, reg) and the
schedule (lr, batch size, epoch cap, validation every, patience); the backbone is rebuilt
from the same seed, so it starts from the base run's initial weights; Adam's backbone group
decays by 2·reg and the regulariser adds reg·Σ‖W‖² on its own parameters, as RLMRec puts L2
on every parameter. Only the regulariser differs from the base run. The profile embeddings
are the text stage's (``data/text/<dataset>/{user,item}_emb.npy``, MiniLM, 384-d).

Outputs (``publish=True``; with ``publish=False`` the same tree under ``build/smoke/``),
published together once every listed variant has finished:

- ``checkpoints/systems/rlmrec/<dataset>/<run>/{con,gen}.pt``: backbone and regulariser
  state dicts, params, the phase's results and history;
- ``reports/metrics/systems/rlmrec/<run>.json``: base, con and gen test and best-validation
  metrics (``null`` for a variant not run), epochs, steps, seconds and ``stopped_by`` per
  variant and overall, warning ``flags``, the profile builder, the params;
- ``reports/logs/systems/rlmrec/<run>/{con,gen}.csv``: one row per epoch;
- ``data/systems/rlmrec/<dataset>/<run>/per_user.npz``: per-user test metrics
  ``rlmrec_con.*`` and ``rlmrec_gen.*`` (the base model's are in the train_cf stage's file).

RLMRec-Gen is skipped on a backbone without propagation (MF: a masked node's embedding
would be the mask token alone); the metrics JSON says so under ``skipped``.

``<run>`` is ``<backbone>-<seed>``. The in-progress state lives in ``build/state/``
(``resume: true`` continues an interrupted run there).
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict
from typing import Any

import pandas as pd
import torch

from facelib import paths
from facelib.data import RecDataset, load_dataset
from facelib.data.errors import DataError
from facelib.device import resolve_device
from facelib.eval import KS
from facelib.io import StagedOutputs, write_json
from facelib.models import Backbone, Regularizer, make_backbone
from facelib.seed import seed_everything
from facelib.systems.rlmrec.model.contrastive import RLMRecCon
from facelib.systems.rlmrec.model.generative import GRAPH_FREE, RLMRecGen
from facelib.systems.rlmrec.params import VARIANTS, RLMRecParams, RLMRecPaths, rlmrec_paths
from facelib.train import (FitResult, Phase, TrainCFParams, TrainingError, fit, load_backbone,
                           save_checkpoint, save_per_user)
from facelib.train.checkpoint import load_checkpoint
from facelib.train.loop import snapshot, warning_flags, write_log
from facelib.train.stage import fit_config

LABELS = {"con": "RLMRec-Con", "gen": "RLMRec-Gen"}
GRAPH_FREE_SKIP = ("not run: {backbone} has no propagation, so a masked node's embedding "
                   "is the mask token alone and there is nothing to reconstruct from")


class RLMRecError(DataError):
    """An input of the rlmrec stage is missing or does not fit (one-line message)."""


# ------------------------------------------------------------------------ inputs
def load_base(p: RLMRecParams, fp: RLMRecPaths, ds: RecDataset
              ) -> tuple[TrainCFParams, dict[str, float]]:
    """The base run's parameters and test metrics, from its finished checkpoint; refuses a
    missing, unfinished or mismatched checkpoint, or one whose test metrics differ from the
    metrics JSON published beside it."""
    if not fp.base_checkpoint.is_file():
        raise RLMRecError(f"no {p.backbone} base run at {fp.base_checkpoint}; run the "
                          f"train_cf stage first (dvc repro train_cf, or python -m "
                          f"facelib.pipeline train_cf --set backbone={p.backbone} "
                          f"--set seed={p.seed})")
    ck = load_checkpoint(fp.base_checkpoint, made_by="train_cf")
    run = ck.get("run_params", {})
    if run.get("backbone") != p.backbone or run.get("seed") != p.seed:
        raise RLMRecError(f"checkpoint {fp.base_checkpoint} holds {run.get('backbone')}-"
                          f"{run.get('seed')}, not {p.backbone}-{p.seed}; rerun the train_cf "
                          f"stage (dvc repro train_cf)")
    if fp.base_metrics.is_file():
        published = json.loads(fp.base_metrics.read_text()).get("test")
        if published != ck.get("test"):
            raise RLMRecError(f"checkpoint {fp.base_checkpoint} does not belong to the run of "
                              f"{fp.base_metrics} (their test metrics differ); rerun the "
                              f"train_cf stage (dvc repro train_cf)")
    _, cfp = load_backbone(fp.base_checkpoint, ds)  # finished, same split; weights unused
    return cfp, dict(ck["test"])


def profile_tensors(p: RLMRecParams, ds: RecDataset) -> tuple[torch.Tensor, torch.Tensor,
                                                              dict[str, Any]]:
    """The text stage's user [U, d_s] and item [I, d_s] profile embeddings and its meta."""
    from facelib.text import TextError, load_text_artifacts

    try:
        art = load_text_artifacts(p.dataset)
    except TextError as exc:
        raise RLMRecError(str(exc)) from None
    if (len(art.user_emb), len(art.item_emb)) != (ds.n_users, ds.n_items):
        raise RLMRecError(f"text artifacts of {p.dataset} have {len(art.user_emb)} users x "
                          f"{len(art.item_emb)} items but the dataset {ds.n_users} x "
                          f"{ds.n_items}; run the text stage again")
    return torch.from_numpy(art.user_emb), torch.from_numpy(art.item_emb), art.meta


# ------------------------------------------------------------------------ training
def make_regularizer(variant: str, p: RLMRecParams, user_prf: torch.Tensor,
                     item_prf: torch.Tensor, dim: int, reg: float) -> Regularizer:
    """RLMRec-Con or RLMRec-Gen with the params' weights and temperatures."""
    if variant == "con":
        return RLMRecCon(user_prf, item_prf, dim, p.kd_weight, p.kd_tau, reg)
    if variant == "gen":
        return RLMRecGen(user_prf, item_prf, dim, p.mask_ratio, p.recon_weight, p.recon_tau,
                         reg)
    raise ValueError(f"unknown RLMRec variant {variant!r}; choose one of {VARIANTS}")


def train_variant(variant: str, p: RLMRecParams, cfp: TrainCFParams, ds: RecDataset,
                  user_prf: torch.Tensor, item_prf: torch.Tensor, fp: RLMRecPaths,
                  device: torch.device, progress: bool = False,
                  callback: Any = None) -> tuple[Backbone, Regularizer, FitResult]:
    """One variant from scratch: the backbone as the base run built it (same seed), its
    regulariser, one phase with the base run's schedule."""
    rng = seed_everything(p.seed)
    model = make_backbone(cfp.backbone, ds.n_users, ds.n_items, cfp, ds.matrix("train"))
    with torch.random.fork_rng(devices=[]):  # the backbone's random stream stays the base run's
        reg = make_regularizer(variant, p, user_prf, item_prf, model.dim, cfp.reg)
    run_params = {**{k: v for k, v in asdict(p).items()
                     if k not in ("resume", "num_threads", "device", "variants")},
                  "variant": variant, "cf": asdict(cfp)}
    for key in ("resume", "num_threads", "device"):
        run_params["cf"].pop(key)
    state = fp.state[variant]
    try:
        res = fit(model, ds, fit_config(cfp), rng,
                  phases=[Phase(variant, cfp.max_epochs, (reg,))], device=device,
                  checkpoint_path=state, resume=p.resume and state.is_file(),
                  run_params=run_params, progress=progress, callback=callback)
    except TrainingError as exc:
        raise RLMRecError(f"{exc}; lower rlmrec.{'kd' if variant == 'con' else 'recon'}"
                          f"_weight or train_cf.lr") from None
    return model, reg, res


def variant_checkpoint(model: Backbone, reg: Regularizer, variant: str, p: RLMRecParams,
                       cfp: TrainCFParams, res: FitResult) -> dict[str, Any]:
    """Backbone + regulariser state (copies), params and the phase's results."""
    return {"stage": "rlmrec", "variant": variant, "backbone": snapshot([model])[0],
            "regularizer": snapshot([reg])[0], "rlmrec_params": asdict(p),
            "cf_params": asdict(cfp), "emb_dim": model.dim,
            "result": res.last.summary(), "history": res.history}


# ------------------------------------------------------------------------ the stage
def run_rlmrec(p: RLMRecParams, progress: bool = False, publish: bool = False
               ) -> dict[str, Any]:
    """Train every variant of ``p.variants`` on ``p.backbone``-``p.seed`` from scratch;
    publish checkpoints, metrics JSON, logs and per-user arrays together; return the
    metrics (+ histories and paths)."""
    t_all, c_all = time.perf_counter(), time.process_time()
    if p.num_threads > 0:
        torch.set_num_threads(p.num_threads)
    device = resolve_device(p.device, "rlmrec")
    fp = rlmrec_paths(p, publish)
    ds = load_dataset(paths.processed_dir(p.dataset))
    user_prf, item_prf, text_meta = profile_tensors(p, ds)
    cfp, base_test = load_base(p, fp, ds)

    results: dict[str, FitResult] = {}
    checkpoints: dict[str, dict[str, Any]] = {}
    skipped = {v: GRAPH_FREE_SKIP.format(backbone=p.backbone) for v in p.variants
               if v == "gen" and p.backbone in GRAPH_FREE}
    if len(skipped) == len(p.variants):
        raise RLMRecError(f"nothing to run: {p.backbone} has no propagation for RLMRec-Gen; "
                          f"add con to rlmrec.variants or choose a graph backbone")
    for variant in (v for v in p.variants if v not in skipped):
        model, reg, res = train_variant(variant, p, cfp, ds, user_prf, item_prf, fp, device,
                                        progress)
        results[variant] = res
        checkpoints[variant] = variant_checkpoint(model, reg, variant, p, cfp, res)

    def section(variant: str) -> dict[str, Any] | None:
        if variant not in results:
            return None
        res = results[variant]
        return {"test": res.test, "valid": res.best_valid, **res.last.summary(),
                "seconds_per_epoch": round(res.seconds_per_epoch, 4)}

    flags = sorted({f for res in results.values() for f in warning_flags(res.history)})
    metrics = {
        "dataset": p.dataset, "backbone": p.backbone, "seed": p.seed,
        "base": {"test": base_test, "source": f"{fp.base_checkpoint.name} (the train_cf run "
                                               f"this one mirrors)"},
        **{v: section(v) for v in VARIANTS},
        "stopped_by": ("cap" if any(r.stopped_by == "cap" for r in results.values())
                       else "early_stopping"),
        "flags": flags, "skipped": skipped,
        "profile_builder": text_meta.get("builder"), "profile_dim": int(user_prf.shape[1]),
        "emb_dim": cfp.dim, "layers": cfp.layers, "reg": cfp.reg, "lr": cfp.lr,
        "batch_size": cfp.batch_size,
        "seconds": {**{v: round(r.last.seconds, 2) for v, r in results.items()},
                    "cpu_total": round(time.process_time() - c_all, 2),
                    "total": round(time.perf_counter() - t_all, 2)},
        "device": str(device), "threads": torch.get_num_threads(),
        "params": asdict(p),
    }
    with StagedOutputs(paths.repo_root() / "build") as staged:
        for v, state in checkpoints.items():
            save_checkpoint(state, staged(fp.checkpoints[v]))
            write_log(results[v].history, staged(fp.logs[v]))
        save_per_user(staged(fp.per_user),
                      {f"rlmrec_{v}": r.test_per_user for v, r in results.items()})
        write_json(metrics, staged(fp.metrics))
        gone = [v for v in VARIANTS if v not in results]
        staged.publish(stale=[fp.checkpoints[v] for v in gone] + [fp.logs[v] for v in gone])
    return {**metrics, "history": {v: r.history for v, r in results.items()}, "paths": fp}


# ------------------------------------------------------------------------ notebook helpers
def prepare_smoke_inputs(p: RLMRecParams, progress: bool = False) -> None:
    """Create what a standalone smoke run of ``p`` needs and is missing: the synthetic
    processed dataset, its text artifacts, and a tiny base run (build/smoke)."""
    from facelib.config import build
    from facelib.data import DataParams, prepare_dataset
    from facelib.text import TextError, TextParams, load_text_artifacts
    from facelib.text.stage import run_text_stage
    from facelib.train import run_train_cf

    if p.dataset == "synthetic" and not (paths.processed_dir(p.dataset) / "meta.json").exists():
        prepare_dataset(build(DataParams, {"dataset": "synthetic"}, "data"))
    try:
        load_text_artifacts(p.dataset)
    except TextError:  # missing, or written by an older version
        run_text_stage(build(TextParams, {"dataset": p.dataset, "device": "cpu"}, "text"),
                       progress)
    if not rlmrec_paths(p, publish=False).base_checkpoint.is_file():
        values = {"dataset": p.dataset, "backbone": p.backbone, "seed": p.seed, "dim": 32,
                  "layers": 2, "lr": 0.01, "batch_size": 256, "max_epochs": 10,
                  "eval_every": 2, "patience": 3, "device": "cpu"}
        run_train_cf(build(TrainCFParams, values, "train_cf"), progress, publish=False)


def metrics_table(metrics: dict[str, Any]) -> pd.DataFrame:
    """Test metrics of the base model and each variant run: rows run, columns metric."""
    rows = {"base (train_cf)": metrics["base"]["test"]}
    rows.update({LABELS[v]: metrics[v]["test"] for v in VARIANTS if metrics.get(v)})
    return pd.DataFrame(rows).T[[f"{m}@{k}" for m in ("recall", "ndcg") for k in KS]]


def curves(metrics: dict[str, Any]) -> pd.DataFrame:
    """Per-epoch logs of the variants in long form (run, epoch, losses, validation)."""
    return pd.concat([pd.DataFrame(h).assign(run=LABELS[v])
                      for v, h in metrics["history"].items()], ignore_index=True)

