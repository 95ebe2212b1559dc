"""Regularisers trained jointly with the backbone, from scratch: the run shared by the
related systems (RLMRec-Con/Gen, DaRec) of ``related/dvc.yaml``.

RLMRec trains the backbone *with* its regulariser end to end, without pre-training, and
DaRec plugs into the same place. So, unlike the face stage (which fine-tunes the
``train_cf`` checkpoint), each variant of such a system is a fresh run of
:func:`facelib.train.fit` with one phase::

    L = L_bpr (+ backbone terms) + the regulariser's weighted terms     selects recall@20

The ``train_cf`` run of the same backbone and seed is the base model and is mirrored
exactly: its checkpoint gives the backbone's parameters (d, layers, keep rate, reg) and the
schedule (lr, batch size, epoch cap, validation every, patience); the backbone is rebuilt
from the same seed, so it starts from the base run's initial weights (the regulariser is
built under a forked RNG); Adam's backbone group decays by 2·reg. Only the regulariser
differs from the base model. The profile embeddings are the text stage's
(``data/text/<dataset>/{user,item}_emb.npy``, MiniLM, 384-d).

Outputs of system ``<system>`` on run ``<run>`` = ``<backbone>-<seed>`` (``publish=True``;
with ``publish=False`` the same tree under ``build/smoke/``), published together once every
variant has finished:

- ``checkpoints/related/<system>/<dataset>/<run>/<variant>.pt``: backbone and regulariser
  state dicts, params, the phase's results and history;
- ``reports/metrics/related/<system>/<run>.json``: the base model's and each variant's test
  and best-validation metrics (``null`` for a variant not run), epochs, steps, seconds and
  ``stopped_by`` per variant and overall, warning ``flags``, the profile builder, params;
- ``reports/logs/related/<system>/<run>/<variant>.csv``: one row per epoch;
- ``data/related/<system>/<dataset>/<run>/per_user.npz``: per-user test metrics
  ``<system>_<variant>.*`` (the base model's are in the train_cf stage's file).

The in-progress state lives in ``build/state/`` (``resume: true`` continues there).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import torch

from facelib import paths
from facelib.config import dataset_param, device_param, param, threads_param
from facelib.data import RecDataset, load_dataset
from facelib.data.errors import DataError
from facelib.device import resolve_device
from facelib.eval import KS
from facelib.io import StagedOutputs, write_json
from facelib.models import Backbone, Regularizer, make_backbone
from facelib.models.registry import BACKBONES
from facelib.seed import seed_everything
from facelib.train import (FitResult, Phase, TrainCFParams, TrainingError, fit, load_backbone,
                           save_checkpoint, save_per_user)
from facelib.train.checkpoint import load_checkpoint
from facelib.train.loop import snapshot, warning_flags, write_log
from facelib.train.stage import fit_config, output_root, state_path

PIPELINE = "related"  # the output group and the pipeline folder (related/dvc.yaml)
RUNTIME = ("resume", "num_threads", "device")  # params that do not change a run's numbers

# (user profiles [U, d_s], item profiles [I, d_s], d, reg) -> the variant's regulariser
RegularizerFactory = Callable[[torch.Tensor, torch.Tensor, int, float], Regularizer]


class JointError(DataError):
    """An input of a jointly trained system is missing or does not fit (one line)."""


@dataclass(frozen=True)
class JointParams:
    """The fields every jointly trained system's params section has (its own follow)."""

    dataset: str = dataset_param()
    backbone: str = param("lightgcn", choices=BACKBONES,
                          help="backbone trained with the regulariser (its train_cf run "
                               "gives d, layers, reg and the schedule)")
    seed: int = param(0, ge=0, help="seed of the run (and of the train_cf run it mirrors)")
    resume: bool = param(False, help="continue an interrupted run from its saved state")
    device: str = device_param()
    num_threads: int = threads_param()


@dataclass(frozen=True)
class JointPaths:
    """A run's files: the train_cf run it mirrors, and its outputs (per variant)."""

    base_checkpoint: Path
    base_metrics: Path
    checkpoints: dict[str, Path]
    metrics: Path
    logs: dict[str, Path]
    per_user: Path
    state: dict[str, Path]          # resumable, under build/state


def run_files(root: Path, system: str, dataset: str, run: str,
              variants: Sequence[str]) -> dict[str, Any]:
    """The output files of ``system``'s run ``run`` below ``root``: one folder per run under
    ``checkpoints/``, ``data/`` and ``reports/logs/`` of ``related/<system>``, and
    ``reports/metrics/related/<system>/<run>.json``."""
    group = f"{PIPELINE}/{system}"
    ck = root / "checkpoints" / group / dataset / run
    logs = root / "reports" / "logs" / group / run
    return {"checkpoints": {v: ck / f"{v}.pt" for v in variants},
            "metrics": root / "reports" / "metrics" / group / f"{run}.json",
            "logs": {v: logs / f"{v}.csv" for v in variants},
            "per_user": root / "data" / group / dataset / run / "per_user.npz"}


def base_files(dataset: str, backbone: str, seed: int, publish: bool) -> tuple[Path, Path]:
    """The checkpoint and metrics JSON of the train_cf run a run mirrors. Unpublished runs
    read a smoke train_cf run (build/smoke) when one exists, else the published one."""
    name = f"{backbone}-{seed}"
    cf = Path("checkpoints") / "cf" / dataset / f"{name}.pt"
    root = output_root(publish)
    src = root if (root / cf).is_file() else paths.repo_root()
    return src / cf, src / "reports" / "metrics" / "cf" / f"{name}.json"


def joint_paths(system: str, dataset: str, backbone: str, seed: int,
                variants: Sequence[str], publish: bool) -> JointPaths:
    """Where the run reads (:func:`base_files`) and writes (below build/smoke/ unless
    ``publish``)."""
    name = f"{backbone}-{seed}"
    checkpoint, metrics = base_files(dataset, backbone, seed, publish)
    return JointPaths(
        base_checkpoint=checkpoint, base_metrics=metrics,
        state={v: state_path(publish, f"{PIPELINE}/{system}", dataset, f"{name}-{v}")
               for v in variants},
        **run_files(output_root(publish), system, dataset, name, variants))


# ------------------------------------------------------------------------ inputs
def load_base(backbone: str, seed: int, fp: JointPaths, ds: RecDataset
              ) -> tuple[TrainCFParams, dict[str, float]]:
    """The base run's parameters and test metrics, from its finished checkpoint; refuses a
    missing, unfinished or mismatched checkpoint, or one whose test metrics differ from the
    metrics JSON published beside it."""
    rerun = (f"python -m facelib.pipeline train_cf --set backbone={backbone} --set seed={seed}"
             f" (or dvc repro train_cf)")
    if not fp.base_checkpoint.is_file():
        raise JointError(f"no {backbone} base run at {fp.base_checkpoint}; run the train_cf "
                         f"stage first: {rerun}")
    ck = load_checkpoint(fp.base_checkpoint, made_by="train_cf")
    run = ck.get("run_params", {})
    if run.get("backbone") != backbone or run.get("seed") != seed:
        raise JointError(f"checkpoint {fp.base_checkpoint} holds {run.get('backbone')}-"
                         f"{run.get('seed')}, not {backbone}-{seed}; rerun {rerun}")
    if fp.base_metrics.is_file():
        published = json.loads(fp.base_metrics.read_text()).get("test")
        if published != ck.get("test"):
            raise JointError(f"checkpoint {fp.base_checkpoint} does not belong to the run of "
                             f"{fp.base_metrics} (their test metrics differ); rerun {rerun}")
    _, cfp = load_backbone(fp.base_checkpoint, ds)  # finished, same split; weights unused
    return cfp, dict(ck["test"])


def profile_tensors(dataset: str, ds: RecDataset
                    ) -> tuple[torch.Tensor, torch.Tensor, dict[str, Any]]:
    """The text stage's user [U, d_s] and item [I, d_s] profile embeddings and its meta."""
    from facelib.text import TextError, load_text_artifacts

    try:
        art = load_text_artifacts(dataset)
    except TextError as exc:
        raise JointError(str(exc)) from None
    if (len(art.user_emb), len(art.item_emb)) != (ds.n_users, ds.n_items):
        raise JointError(f"text artifacts of {dataset} have {len(art.user_emb)} users x "
                         f"{len(art.item_emb)} items but the dataset {ds.n_users} x "
                         f"{ds.n_items}; run the text stage again (dvc repro text)")
    return torch.from_numpy(art.user_emb), torch.from_numpy(art.item_emb), art.meta


def run_params(p: JointParams, variant: str, cfp: TrainCFParams) -> dict[str, Any]:
    """What a run's numbers depend on: the system's params without the runtime keys (and
    without ``variants``), the variant and the mirrored train_cf params."""
    cf = {k: v for k, v in asdict(cfp).items() if k not in RUNTIME}
    own = {k: v for k, v in asdict(p).items() if k not in (*RUNTIME, "variants")}
    return {**own, "variant": variant, "cf": cf}


# ------------------------------------------------------------------------ training
def train_variant(variant: str, make: RegularizerFactory, p: JointParams, cfp: TrainCFParams,
                  ds: RecDataset, profiles: tuple[torch.Tensor, torch.Tensor],
                  state: Path, device: torch.device, fix: str, progress: bool = False
                  ) -> tuple[Backbone, Regularizer, FitResult]:
    """One variant from scratch: the backbone as the base run built it (same seed), its
    regulariser, one phase with the base run's schedule. ``fix`` names what to lower when
    the run diverges."""
    rng = seed_everything(p.seed)
    model = make_backbone(cfp.backbone, ds.n_users, ds.n_items, cfp, ds.matrix("train"))
    with torch.random.fork_rng(devices=[]):  # the backbone's random stream stays the base run's
        reg = make(profiles[0], profiles[1], model.dim, cfp.reg)
    try:
        res = fit(model, ds, fit_config(cfp), rng,
                  phases=[Phase(variant, cfp.max_epochs, (reg,))], device=device,
                  checkpoint_path=state, resume=p.resume and state.is_file(),
                  run_params=run_params(p, variant, cfp), progress=progress)
    except TrainingError as exc:
        raise JointError(f"{exc}; lower {fix} or train_cf.lr") from None
    return model, reg, res


def run_joint(system: str, p: JointParams, factories: Mapping[str, RegularizerFactory],
              skipped: Mapping[str, str] | None = None, fix: str = "the regulariser's weight",
              notes: Mapping[str, Any] | None = None, progress: bool = False,
              publish: bool = False) -> dict[str, Any]:
    """Train every variant of ``factories`` (minus ``skipped``: variant -> why) on
    ``p.backbone``-``p.seed`` from scratch; publish checkpoints, metrics JSON (with
    ``notes`` added, e.g. what is reconstructed), logs and per-user arrays together; return
    the metrics (+ histories and paths)."""
    t_all, c_all = time.perf_counter(), time.process_time()
    if p.num_threads > 0:
        torch.set_num_threads(p.num_threads)
    device = resolve_device(p.device, system)
    variants = tuple(factories)
    fp = joint_paths(system, p.dataset, p.backbone, p.seed, variants, publish)
    ds = load_dataset(paths.processed_dir(p.dataset))
    user_prf, item_prf, text_meta = profile_tensors(p.dataset, ds)
    cfp, base_test = load_base(p.backbone, p.seed, fp, ds)

    skipped = dict(skipped or {})
    results: dict[str, FitResult] = {}
    checkpoints: dict[str, dict[str, Any]] = {}
    for variant in (v for v in variants if v not in skipped):
        model, reg, res = train_variant(variant, factories[variant], p, cfp, ds,
                                        (user_prf, item_prf), fp.state[variant], device, fix,
                                        progress)
        results[variant] = res
        checkpoints[variant] = {
            "stage": system, "variant": variant, "backbone": snapshot([model])[0],
            "regularizer": snapshot([reg])[0], "params": asdict(p), "cf_params": asdict(cfp),
            "emb_dim": model.dim, "result": res.last.summary(), "history": res.history}

    def section(variant: str) -> dict[str, Any] | None:
        if variant not in results:
            return None
        res = results[variant]
        return {"test": res.test, "valid": res.best_valid, **res.last.summary(),
                "seconds_per_epoch": round(res.seconds_per_epoch, 4)}

    metrics = {
        "dataset": p.dataset, "backbone": p.backbone, "seed": p.seed, "system": system,
        "base": {"test": base_test, "source": f"{fp.base_checkpoint.name} (the train_cf run "
                                               f"this one mirrors)"},
        **{v: section(v) for v in variants},
        "stopped_by": ("cap" if any(r.stopped_by == "cap" for r in results.values())
                       else "early_stopping"),
        "flags": sorted({f for res in results.values() for f in warning_flags(res.history)}),
        "skipped": skipped,
        "profile_builder": text_meta.get("builder"), "profile_dim": int(user_prf.shape[1]),
        "emb_dim": cfp.dim, "layers": cfp.layers, "reg": cfp.reg, "lr": cfp.lr,
        "batch_size": cfp.batch_size,
        "seconds": {**{v: round(r.last.seconds, 2) for v, r in results.items()},
                    "cpu_total": round(time.process_time() - c_all, 2),
                    "total": round(time.perf_counter() - t_all, 2)},
        "device": str(device), "threads": torch.get_num_threads(),
        "params": asdict(p), **(notes or {}),
    }
    with StagedOutputs(paths.repo_root() / "build") as staged:
        for v, state in checkpoints.items():
            save_checkpoint(state, staged(fp.checkpoints[v]))
            write_log(results[v].history, staged(fp.logs[v]))
        save_per_user(staged(fp.per_user),
                      {f"{system}_{v}": r.test_per_user for v, r in results.items()})
        write_json(metrics, staged(fp.metrics))
        gone = [v for v in variants if v not in results]
        staged.publish(stale=[fp.checkpoints[v] for v in gone] + [fp.logs[v] for v in gone])
    return {**metrics, "history": {v: r.history for v, r in results.items()}, "paths": fp}


# ------------------------------------------------------------------------ notebook helpers
def prepare_smoke_inputs(p: JointParams, progress: bool = False) -> None:
    """Create what a standalone smoke run of ``p`` needs and is missing: the synthetic
    processed dataset, its text artifacts, and a tiny base run (build/smoke)."""
    dataset, backbone, seed = p.dataset, p.backbone, p.seed
    from facelib.config import build
    from facelib.data import DataParams, prepare_dataset
    from facelib.text import TextError, TextParams, load_text_artifacts
    from facelib.text.stage import run_text_stage
    from facelib.train import run_train_cf

    if dataset == "synthetic" and not (paths.processed_dir(dataset) / "meta.json").exists():
        prepare_dataset(build(DataParams, {"dataset": "synthetic"}, "data"))
    try:
        load_text_artifacts(dataset)
    except TextError:  # missing, or written by an older version
        run_text_stage(build(TextParams, {"dataset": dataset, "device": "cpu"}, "text"),
                       progress)
    if not base_files(dataset, backbone, seed, publish=False)[0].is_file():
        values = {"dataset": dataset, "backbone": backbone, "seed": seed, "dim": 32,
                  "layers": 2, "lr": 0.01, "batch_size": 256, "max_epochs": 10,
                  "eval_every": 2, "patience": 3, "device": "cpu"}
        run_train_cf(build(TrainCFParams, values, "train_cf"), progress, publish=False)


def metrics_table(metrics: Mapping[str, Any], labels: Mapping[str, str]) -> pd.DataFrame:
    """Test metrics of the base model and each variant run (``labels``: variant -> row
    name): rows run, columns metric."""
    rows = {"base (train_cf)": metrics["base"]["test"]}
    rows.update({label: metrics[v]["test"] for v, label in labels.items() if metrics.get(v)})
    return pd.DataFrame(rows).T[[f"{m}@{k}" for m in ("recall", "ndcg") for k in KS]]


def curves(metrics: Mapping[str, Any], labels: Mapping[str, str]) -> pd.DataFrame:
    """Per-epoch logs of the variants in long form (run, epoch, losses, validation)."""
    return pd.concat([pd.DataFrame(h).assign(run=labels[v])
                      for v, h in metrics["history"].items()], ignore_index=True)
