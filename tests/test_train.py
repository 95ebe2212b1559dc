"""Trainer: determinism, exact resume, early stopping, plug-ins, errors, stage outputs."""

from __future__ import annotations

import json

import pandas as pd
import pytest
import torch

from conftest import fit_config
from facelib.config import ParamsError, build
from facelib.data import load_dataset, save_dataset
from facelib.eval import evaluate
from facelib.models import Regularizer, make_backbone
from facelib.seed import seed_everything
from facelib.train import (
    CheckpointError,
    TrainCFParams,
    TrainingError,
    fit,
    load_backbone,
    make_optimizer,
    run_most_popular,
    run_train_cf,
)


pytestmark = pytest.mark.usefixtures("one_thread")


PARAMS = build(TrainCFParams, {"dim": 16, "layers": 2, "keep_rate": 0.8, "eps": 0.2}, "train_cf")
CFG = fit_config(lr=0.01, batch_size=256, max_epochs=6, eval_every=2, patience=10)


def _fit(ds, name="lightgcn", cfg=CFG, seed=0, **kw):
    rng = seed_everything(seed)
    model = make_backbone(name, ds.n_users, ds.n_items, PARAMS, ds.matrix("train"))
    return model, fit(model, ds, cfg, rng, **kw)


def _strip(history):
    """History rows without timings, NaN (no evaluation that epoch) as None."""
    return [{k: None if v != v else v for k, v in row.items() if "seconds" not in k}
            for row in history]


@pytest.mark.parametrize("name", ["lightgcn", "simgcl"])
def test_same_seed_same_metrics(synthetic_ds, name):
    _, a = _fit(synthetic_ds, name)
    _, b = _fit(synthetic_ds, name)
    _, c = _fit(synthetic_ds, name, seed=1)
    assert a.test == b.test and a.best_valid == b.best_valid
    assert _strip(a.history) == _strip(b.history)
    assert a.test != c.test


def test_resume_equals_uninterrupted(synthetic_ds, tmp_path):
    cfg = fit_config(lr=0.01, batch_size=256, max_epochs=8, eval_every=2, patience=10)
    _, full = _fit(synthetic_ds, cfg=cfg, checkpoint_path=tmp_path / "full.pt")

    class Crash(Exception):
        pass

    def crash_at_5(row):
        if row["epoch"] == 5:
            raise Crash

    ck = tmp_path / "run.pt"
    with pytest.raises(Crash):
        _fit(synthetic_ds, cfg=cfg, checkpoint_path=ck, callback=crash_at_5)
    seen = []
    # a fresh process would start from another RNG state: scramble it on purpose
    _, resumed = _fit(synthetic_ds, cfg=cfg, seed=123, checkpoint_path=ck, resume=True,
                      run_params=None, callback=lambda row: seen.append(row["epoch"]))
    assert seen == [5, 6, 7, 8]  # continued after the checkpoint of epoch 4
    assert resumed.test == full.test and resumed.best_epoch == full.best_epoch
    assert _strip(resumed.history) == _strip(full.history)
    saved = torch.load(ck, weights_only=False)
    assert saved["finished"] and saved["progress"]["done"][-1]["test"] == full.test


def test_resume_rejects_missing_and_mismatched_checkpoints(synthetic_ds, tmp_path):
    with pytest.raises(CheckpointError, match="no checkpoint at .*run without resume"):
        _fit(synthetic_ds, checkpoint_path=tmp_path / "none.pt", resume=True)
    ck = tmp_path / "run.pt"
    _fit(synthetic_ds, cfg=fit_config(lr=0.01, batch_size=256, max_epochs=2),
         checkpoint_path=ck)
    with pytest.raises(CheckpointError, match="lr is 0.01 there but 0.02 now") as err:
        _fit(synthetic_ds, cfg=fit_config(lr=0.02, batch_size=256, max_epochs=2),
             checkpoint_path=ck, resume=True)
    assert "\n" not in str(err.value)


def test_early_stopping_counts_evaluations_without_gain(synthetic_ds):
    cfg = fit_config(lr=1e-12, batch_size=512, max_epochs=50, eval_every=1, patience=2)
    _, res = _fit(synthetic_ds, "mf", cfg=cfg)
    assert res.stopped_by == "early_stopping" and res.best_epoch == 1 and res.epochs_run == 3


class NaNAtEpoch(Regularizer):
    """Returns a NaN loss from the first batch of epoch ``at`` on."""

    def __init__(self, at: int, batches_per_epoch: int) -> None:
        super().__init__()
        self.at, self.per, self.calls = at, batches_per_epoch, 0

    def losses(self, out, users, pos, neg):
        self.calls += 1
        bad = self.calls > (self.at - 1) * self.per
        return {"nan": torch.tensor(float("nan") if bad else 0.0)}


def test_nan_loss_stops_with_the_epoch(synthetic_ds):
    per = -(-len(synthetic_ds.train) // 256)
    with pytest.raises(TrainingError, match=r"non-finite in epoch 2 \(.*nan=nan") as err:
        _fit(synthetic_ds, "mf", regularizers=[NaNAtEpoch(2, per)])
    assert "\n" not in str(err.value)


class Shrink(Regularizer):
    """A plug-in with one parameter: loss 0.1·(‖mean user emb‖ − w)²."""

    def __init__(self) -> None:
        super().__init__()
        self.w = torch.nn.Parameter(torch.zeros(()))

    def losses(self, out, users, pos, neg):
        return {"shrink": 0.1 * (out.user_emb.mean(0).norm() - self.w) ** 2}


def test_regularizer_gets_its_own_param_group_and_loss(synthetic_ds):
    ds = synthetic_ds
    model = make_backbone("mf", ds.n_users, ds.n_items, PARAMS, ds.matrix("train"))
    reg = Shrink()
    cfg = fit_config(lr=0.01, reg=1e-4, base_lr_scale=0.1, batch_size=256, max_epochs=2)
    groups = make_optimizer(model, [reg], cfg).param_groups
    assert (groups[0]["lr"], groups[0]["weight_decay"]) == (pytest.approx(0.001), 2e-4)
    assert (groups[1]["lr"], groups[1]["weight_decay"]) == (0.01, 0.0)
    assert groups[1]["params"] == [reg.w]
    res = fit(model, ds, cfg, seed_everything(0), regularizers=[reg])
    assert "loss_shrink" in res.history[0] and reg.w.item() != 0.0


@pytest.mark.parametrize("values, needle", [
    ({"backbone": "gcn"}, "unknown value 'gcn'; choose one of 'mf', 'lightgcn', 'simgcl'"),
    ({"dim": 0}, "[train_cf.dim]: 0 is out of range, must be > 0"),
    ({"layers": 0}, "[train_cf.layers]: 0 is out of range, must be >= 1"),
    ({"keep_rate": 0.0}, "[train_cf.keep_rate]: 0.0 is out of range, must be > 0"),
    ({"keep_rate": 1.5}, "[train_cf.keep_rate]: 1.5 is out of range, must be <= 1"),
    ({"device": "tpu"}, "[train_cf.device]: unknown value 'tpu'"),
    ({"backbone_overrides": {"gcn": {}}}, "unknown backbone 'gcn'"),
    ({"backbone_overrides": {"mf": {"seed": 3}}}, "seed cannot be overridden per backbone"),
    ({"backbone_overrides": {"mf": {"dim": -1}}}, "[train_cf.backbone_overrides.mf.dim]"),
])
def test_bad_params_are_one_liners(values, needle):
    with pytest.raises(ParamsError) as err:
        build(TrainCFParams, values, "train_cf")
    assert needle in str(err.value) and "\n" not in str(err.value)


@pytest.mark.parametrize("profile", ["cpu", "gpu"])
def test_documented_profiles_are_valid(profile):
    from facelib.train.params import PROFILES

    for name in ("mf", "lightgcn", "simgcl"):
        p = build(TrainCFParams, {**PROFILES[profile], "backbone": name}, "train_cf").resolved()
        assert p.backbone == name


def test_backbone_overrides_resolve():
    p = build(TrainCFParams, {"backbone": "simgcl", "reg": 1e-6,
                              "backbone_overrides": {"simgcl": {"reg": 1e-5, "max_epochs": 3}}},
              "train_cf")
    r = p.resolved()
    assert (r.reg, r.max_epochs, r.backbone) == (1e-5, 3, "simgcl")
    assert build(TrainCFParams, {**vars(p), "backbone": "mf"}, "train_cf").resolved().reg == 1e-6


@pytest.fixture
def repo(tmp_path, monkeypatch, synthetic_ds):
    """A throw-away repository root holding the synthetic dataset."""
    (tmp_path / "params.yaml").write_text("{}\n")
    (tmp_path / "pyproject.toml").write_text("")
    save_dataset(synthetic_ds, tmp_path / "data" / "processed" / "synthetic")
    monkeypatch.setenv("FACELIB_ROOT", str(tmp_path))
    return tmp_path


def test_run_train_cf_outputs_and_reload(repo):
    p = build(TrainCFParams, {"dataset": "synthetic", "backbone": "lightgcn", "seed": 1,
                              "dim": 16, "layers": 2, "lr": 0.01, "batch_size": 256,
                              "max_epochs": 4, "eval_every": 2, "device": "cpu"}, "train_cf")
    out = run_train_cf(p, progress=False, publish=True)
    ck = repo / "checkpoints" / "cf" / "synthetic" / "lightgcn-1.pt"
    metrics = json.loads((repo / "reports" / "metrics" / "cf" / "lightgcn-1.json").read_text())
    log = pd.read_csv(repo / "reports" / "logs" / "cf" / "lightgcn-1.csv")
    assert ck.is_file()
    assert set(metrics["test"]) == {f"{m}@{k}" for m in ("recall", "ndcg") for k in (5, 10, 20)}
    assert metrics["test"] == out["test"] and metrics["epochs_run"] == 4
    assert {"best_epoch", "valid", "seconds_per_epoch", "params", "most_popular"} <= set(metrics)
    assert metrics["test"]["recall@20"] > metrics["most_popular"]["test"]["recall@20"]
    assert list(log["epoch"]) == [1, 2, 3, 4]
    assert {"loss", "loss_bpr", "valid_recall@20", "valid_ndcg@20", "seconds"} <= set(log)
    assert log["valid_recall@20"].isna().tolist() == [True, False, True, False]
    # what plug-ins start from: the best-validation weights give the same test metrics
    ds = load_dataset(repo / "data" / "processed" / "synthetic")
    model, params = load_backbone(ck)
    assert params.backbone == "lightgcn"
    assert evaluate(model, ds.matrix("train"), ds.matrix("test")) == metrics["test"]
    # resuming a finished run trains nothing and reports the same numbers
    again = run_train_cf(build(TrainCFParams, {**vars(p), "resume": True}, "train_cf"),
                         publish=True)
    assert again["test"] == out["test"] and again["epochs_run"] == 4
    with pytest.raises(CheckpointError, match="batch_size is 256 there but 128 now"):
        run_train_cf(build(TrainCFParams, {**vars(p), "resume": True, "batch_size": 128},
                           "train_cf"), publish=True)
    # smoke runs never touch reports/
    run_train_cf(build(TrainCFParams, {**vars(p), "seed": 2}, "train_cf"), publish=False)
    assert (repo / "build" / "smoke" / "reports" / "metrics" / "cf" / "lightgcn-2.json").is_file()
    assert not (repo / "reports" / "metrics" / "cf" / "lightgcn-2.json").exists()
    floor = run_most_popular("synthetic", publish=True)
    assert json.loads((repo / "reports" / "metrics" / "cf" / "most_popular.json").read_text()) \
        == floor


def test_an_interrupted_run_leaves_the_previous_outputs_whole(repo):
    """Outputs are published together when a run has finished: a run that dies half-way
    changes none of the files of the previous finished run, and its resumable state lives
    in build/state, not beside them."""
    p = build(TrainCFParams, {"dataset": "synthetic", "backbone": "mf", "seed": 0, "dim": 8,
                              "lr": 0.01, "batch_size": 256, "max_epochs": 4,
                              "device": "cpu"}, "train_cf")
    out = run_train_cf(p, publish=True)["paths"]
    files = (out.checkpoint, out.metrics, out.log, out.per_user)
    before = {f: f.read_bytes() for f in files}

    def die(row):
        if row["epoch"] == 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run_train_cf(build(TrainCFParams, {**vars(p), "lr": 0.02}, "train_cf"),
                     publish=True, callback=die)
    assert {f: f.read_bytes() for f in files} == before
    assert out.state.is_file() and repo / "build" / "state" in out.state.parents
    assert not list((repo / "build").glob(".staging-*"))
