"""SASRec and the CF backbones on the leave-one-out protocol: causality, padding, learning a
deterministic cycle, early stopping, reproducibility and exact resume, config errors."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import backbone_params

from facelib.generative.fit import STOPPED_BY
from facelib.generative.leave_one_out import LeaveOneOut
from facelib.generative.sasrec import (
    SASRec,
    SASRecConfig,
    evaluate_sasrec,
    loo_dataset,
    pad_left,
    rank_loo,
    top_k_stable,
    train_cf_loo,
    train_sasrec,
)
from facelib.train.checkpoint import CheckpointError

METRICS = ["hr@1", "hr@5", "hr@10", "ndcg@5", "ndcg@10"]
TINY = {"dim": 32, "layers": 1, "heads": 2, "dropout": 0.0, "max_len": 8, "lr": 5e-3,
        "batch_size": 32}


def cycle_split(n_users: int = 80, n_items: int = 16, seed: int = 0) -> LeaveOneOut:
    """Each user's items follow the cycle i -> (i + 1) mod I from a random start, 5 to 10
    items long: the next item is a function of the last one."""
    gen = np.random.default_rng(seed)
    seqs = tuple((gen.integers(n_items) + np.arange(gen.integers(5, 11))) % n_items
                 for _ in range(n_users))
    return LeaveOneOut(np.arange(n_users), np.arange(n_items), seqs)


def test_hidden_states_are_causal(one_thread):
    torch.manual_seed(0)
    model = SASRec(20, SASRecConfig(**TINY)).eval()
    seqs = torch.tensor([[3, 5, 7, 9, 11, 13, 2, 4], [0, 0, 1, 2, 3, 4, 5, 6]])
    changed = seqs.clone()
    changed[:, 5] = 17
    with torch.no_grad():
        a, b = model(seqs), model(changed)
    torch.testing.assert_close(a[:, :5], b[:, :5], rtol=0, atol=1e-6)
    assert (a[:, 5:] - b[:, 5:]).abs().amax(-1).min() > 1e-3  # the later ones do change


def test_left_padding_does_not_change_the_scores(one_thread):
    torch.manual_seed(0)
    model = SASRec(20, SASRecConfig(**TINY)).eval()
    short = torch.tensor([[4, 9, 2]])
    padded = torch.tensor([[0, 0, 0, 0, 0, 4, 9, 2]])
    with torch.no_grad():
        torch.testing.assert_close(model.score_last(short), model.score_last(padded),
                                   rtol=0, atol=1e-5)
        torch.testing.assert_close(model(short)[0], model(padded)[0, 5:], rtol=0, atol=1e-5)
        assert model(padded)[0, :5].abs().max() == 0  # padding cells are zero
        other = model.score_last(torch.tensor([[0, 0, 0, 0, 0, 4, 9, 3]]))
    assert (other - model.score_last(padded)).abs().max() > 1e-3


def test_pad_left_shifts_and_keeps_the_most_recent_items():
    out = pad_left([np.array([0, 1, 2, 3]), np.array([5]), np.array([], dtype=np.int64)], 3)
    np.testing.assert_array_equal(out, [[2, 3, 4], [0, 0, 6], [0, 0, 0]])


def test_top_k_stable_breaks_ties_by_item_id():
    gen = np.random.default_rng(0)
    scores = gen.integers(0, 4, size=(50, 30)).astype(np.float32)  # many ties
    want = np.argsort(-scores, axis=1, kind="stable")
    for k in (1, 7, 30, 40):
        np.testing.assert_array_equal(top_k_stable(scores, k), want[:, :min(k, 30)])


def test_sasrec_learns_a_cycle_and_stops_early(one_thread):
    split = cycle_split()
    model, log = train_sasrec(split, SASRecConfig(**TINY, max_epochs=200, patience=3), seed=0)
    assert log.stopped_by == "early_stopping"
    assert log.epoch < 200 and log.best_epoch == log.epoch - 3
    test = evaluate_sasrec(model, split, "test")
    assert list(test) == METRICS
    assert test["hr@1"] > 0.5  # chance: 1 / 16
    top = rank_loo(model, split, "test", k=3)
    assert top.shape == (split.n_users, 3)
    assert (top[:, 0] == split.targets("test")).mean() == pytest.approx(test["hr@1"])
    _, capped = train_sasrec(split, SASRecConfig(**TINY, max_epochs=2), seed=0)
    assert capped.stopped_by == "cap" and capped.epoch == 2


def test_bce_loss_trains(one_thread):
    split = cycle_split()
    _, log = train_sasrec(split, SASRecConfig(**{**TINY, "loss": "bce"}, max_epochs=3), seed=0)
    assert log.stopped_by == "cap" and len(log.history) == 3
    assert log.history[-1]["loss"] < log.history[0]["loss"]


def _same_run(a, b):
    (model_a, log_a), (model_b, log_b) = a, b
    assert log_a.history == log_b.history
    assert (log_a.best_epoch, log_a.best, log_a.stopped_by) == \
        (log_b.best_epoch, log_b.best, log_b.stopped_by)
    for (name, x), (_, y) in zip(model_a.state_dict().items(), model_b.state_dict().items()):
        assert torch.equal(x, y), name


def test_same_seed_same_run_and_resume_is_exact(one_thread, tmp_path):
    split = cycle_split(n_users=40)
    config = SASRecConfig(**{**TINY, "dropout": 0.2}, max_epochs=6, patience=10)
    full = train_sasrec(split, config, seed=3)
    _same_run(full, train_sasrec(split, config, seed=3))
    other = train_sasrec(split, config, seed=4)
    assert other[1].history[0]["loss"] != full[1].history[0]["loss"]

    def crash(epoch: int) -> None:
        if epoch == 4:
            raise KeyboardInterrupt
    path = tmp_path / "sasrec.pt"
    with pytest.raises(KeyboardInterrupt):
        train_sasrec(split, config, seed=3, checkpoint_path=path, callback=crash)
    seen: list[int] = []
    resumed = train_sasrec(split, config, seed=3, checkpoint_path=path, resume=True,
                           callback=seen.append)
    assert seen == [4, 5, 6]  # continued after the last evaluation (epoch 3)
    _same_run(full, resumed)
    with pytest.raises(CheckpointError, match="another run: dropout is 0.2"):
        train_sasrec(split, SASRecConfig(**{**TINY, "dropout": 0.1}, max_epochs=6),
                     seed=3, checkpoint_path=path, resume=True)


@pytest.mark.parametrize("values, match", [
    ({"dim": 0}, r"SASRecConfig\.dim = 0"),
    ({"dim": 30, "heads": 4}, r"SASRecConfig\.heads = 4 does not divide dim = 30"),
    ({"dropout": 1.0}, r"SASRecConfig\.dropout"),
    ({"lr": -1.0}, r"SASRecConfig\.lr"),
    ({"loss": "bpr"}, r"SASRecConfig\.loss = 'bpr'.*ce, bce"),
    ({"select": "recall@20"}, r"SASRecConfig\.select = 'recall@20'"),
    ({"patience": 0}, r"SASRecConfig\.patience"),
])
def test_config_errors_are_one_line(values, match):
    with pytest.raises(ValueError, match=match) as info:
        SASRecConfig(**values)
    assert "\n" not in str(info.value)


def test_too_long_input_and_too_short_histories_are_refused():
    model = SASRec(5, SASRecConfig(max_len=4))
    with pytest.raises(ValueError, match="max_len = 4"):
        model(torch.ones(1, 5, dtype=torch.long))
    short = LeaveOneOut(np.arange(2), np.arange(5), (np.array([0, 1, 2]), np.array([3, 4, 0])))
    with pytest.raises(ValueError, match="nothing to train on"):
        train_sasrec(short, SASRecConfig(max_epochs=1), seed=0)


def test_loo_dataset_holds_the_split():
    split = cycle_split(n_users=10)
    ds = loo_dataset(split, "cycle")
    assert (ds.n_users, ds.n_items) == (10, 16)
    np.testing.assert_array_equal(ds.test, np.column_stack([np.arange(10),
                                                            split.targets("test")]))
    np.testing.assert_array_equal(ds.valid[:, 1], split.targets("valid"))
    assert len(ds.train) == len(np.unique(split.train_pairs(), axis=0))
    assert list(ds.users["raw_id"]) == list(split.user_ids)


@pytest.mark.parametrize("backbone", ["mf", "lightgcn"])
def test_train_cf_loo_returns_the_loo_metrics(one_thread, backbone):
    split = cycle_split()
    params = backbone_params(dim=16, layers=2, lr=0.01, batch_size=64, max_epochs=3,
                             eval_every=1, patience=2)
    out = train_cf_loo(split, backbone, params, seed=0)
    assert list(out)[:5] == METRICS
    assert all(0.0 <= out[m] <= 1.0 for m in METRICS)
    assert out["stopped_by"] in STOPPED_BY and out["backbone"] == backbone
    assert 1 <= out["best_epoch"] <= out["epochs_run"] <= 3
    emb = out.pop("embeddings")
    assert emb["item"].shape[0] == split.n_items and emb["user"].shape[0] == split.n_users
    state = out.pop("state")
    assert state["item_embedding"].shape == (split.n_items, 16)  # the checkpoint's weights
    again = train_cf_loo(split, backbone, params, seed=0)
    assert np.array_equal(again.pop("embeddings")["item"], emb["item"])
    assert all(torch.equal(v, state[k]) for k, v in again.pop("state").items())
    losses = [[row["loss"] for row in run.pop("history")] for run in (out, again)]
    assert losses[0] == losses[1] and len(losses[0]) == out["epochs_run"]
    assert out == again


@pytest.mark.parametrize("model", ["sasrec", "mf"])
def test_a_published_run_fills_every_dvc_output(one_thread, tmp_path, monkeypatch, model,
                                                synthetic_ds):
    """Each output generative/dvc.yaml declares for loo_baselines exists after a run (DVC
    fails a stage whose declared output folder is missing)."""
    import yaml

    from facelib import paths
    from facelib.config import build
    from facelib.data import save_dataset
    from facelib.generative.baselines import BaselineParams, run_baseline
    from facelib.generative.run import run_files

    stage = yaml.safe_load((paths.repo_root() / "generative" / "dvc.yaml").read_text())
    declared = [next(iter(o)) for kind in ("outs", "metrics", "plots")
                for o in stage["stages"]["loo_baselines"][kind]]
    monkeypatch.setenv("FACELIB_ROOT", str(tmp_path))
    save_dataset(synthetic_ds, paths.processed_dir("synthetic"))
    p = build(BaselineParams, {"model": model, "dataset": "synthetic", "max_epochs": 2,
                               **TINY, "device": "cpu", "num_threads": 1}, "loo_baselines")
    run_baseline(p, backbone_params(dim=16, max_epochs=2, batch_size=64), publish=True)
    files = run_files("loo_baselines", "synthetic", f"{model}-0", publish=True)
    run = f"{model}-0"
    for out in declared:
        if out.startswith("reports/generative/notebooks/"):
            continue  # the notebook is papermill's output, not run_baseline's
        path = tmp_path / out.replace("${data.dataset}", "synthetic").replace(
            "${item.model}-${item.seed}", run)
        assert path.exists() and (path.is_file() or any(path.iterdir())), out
    item = np.load(files.data / "embeddings.npz")["item"]
    assert item.shape[0] <= synthetic_ds.n_items  # the 5-core items
