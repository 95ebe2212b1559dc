"""Shared fixtures: a small synthetic dataset built in code (no files needed)."""

from __future__ import annotations

import os

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
