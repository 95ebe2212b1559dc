"""Shared fixtures: a small synthetic dataset built in code (no files needed)."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")


@pytest.fixture(scope="session")
def synthetic_ds():
    """A 300-user x 200-item synthetic dataset, split with seed 0."""
    from facelib.data import build_dataset, make_synthetic

    return build_dataset("synthetic", make_synthetic(300, 200, seed=0), 4.0, 0)


@pytest.fixture()
def one_thread():
    """Tiny problems: one torch thread is faster and immune to other jobs on the machine."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def fit_config(**values):
    """A :class:`facelib.train.FitConfig` for small tests: lr 1e-3, no weight decay, batch
    256, 2 epochs, validation every epoch, patience 10, unless given."""
    from facelib.train import FitConfig

    return FitConfig(**{"lr": 1e-3, "reg": 0.0, "batch_size": 256, "max_epochs": 2,
                        "eval_every": 1, "patience": 10, **values})


def backbone_params(**values):
    """Typed backbone parameters (``train_cf`` defaults unless given)."""
    from facelib.config import build
    from facelib.train import TrainCFParams

    return build(TrainCFParams, values, "train_cf")


# ------------------------------------------------------------------ jointly trained systems
TINY_CF = dict(dataset="synthetic", dim=16, layers=2, lr=0.01, batch_size=64, max_epochs=3,
               eval_every=1, patience=2, device="cpu", num_threads=1)


@pytest.fixture(scope="module")
def joint_root(tmp_path_factory):
    """For the jointly trained systems (RLMRec, DaRec): a throw-away root (FACELIB_ROOT)
    with a 60 x 40 synthetic dataset, text artifacts with random unit profiles, and base
    LightGCN and MF runs (seed 0)."""
    from facelib import paths
    from facelib.config import build
    from facelib.data import build_dataset, make_synthetic, save_dataset
    from facelib.train import TrainCFParams, run_train_cf

    mp = pytest.MonkeyPatch()
    root = tmp_path_factory.mktemp("root")
    mp.setenv("FACELIB_ROOT", str(root))
    threads = torch.get_num_threads()
    try:
        ds = build_dataset("synthetic", make_synthetic(60, 40, ratings_per_user=15, seed=1),
                           4.0, 0)
        save_dataset(ds, paths.processed_dir("synthetic"))
        folder = paths.text_dir("synthetic")
        folder.mkdir(parents=True)
        gen = np.random.default_rng(0)
        for kind, n in (("user", ds.n_users), ("item", ds.n_items), ("codebook", 3),
                        ("word_emb", 3)):
            x = gen.standard_normal((n, 24)).astype(np.float32)
            name = kind if kind in ("codebook", "word_emb") else f"{kind}_emb"
            np.save(folder / f"{name}.npy", x / np.linalg.norm(x, axis=1, keepdims=True))
        (folder / "vocabulary.csv").write_text("word,token_id\nred,1\nblue,2\ngreen,3\n")
        (folder / "profiles.json").write_text(json.dumps(
            {"builder": "test", "user": ["u"] * ds.n_users, "item": ["i"] * ds.n_items}))
        (folder / "meta.json").write_text(json.dumps(
            {"format": 2, "dim": 24, "n_users": ds.n_users, "n_items": ds.n_items,
             "vocabulary_size": 3, "builder": "test"}))
        for backbone in ("lightgcn", "mf"):
            run_train_cf(build(TrainCFParams, {**TINY_CF, "backbone": backbone}, "train_cf"),
                         publish=False)
        yield root
    finally:
        mp.undo()
        torch.set_num_threads(threads)


def run_joint_system(root, run, params_cls, section: str, **values):
    """``run`` (a jointly trained system's stage function) on tiny synthetic params of
    ``params_cls`` inside ``root`` (FACELIB_ROOT), on the CPU with one thread."""
    from facelib.config import build

    mp = pytest.MonkeyPatch()
    mp.setenv("FACELIB_ROOT", str(root))
    try:
        return run(build(params_cls, {"dataset": "synthetic", "device": "cpu",
                                      "num_threads": 1, **values}, section))
    finally:
        mp.undo()
