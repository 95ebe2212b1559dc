"""Shared fixtures: a small synthetic dataset built in code (no files needed)."""

from __future__ import annotations

import os

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")


@pytest.fixture(scope="session")
def synthetic_ds():
    """A 300-user x 200-item synthetic dataset, split with seed 0."""
    from facelib.data import build_dataset, make_synthetic

    return build_dataset("synthetic", make_synthetic(300, 200, seed=0), 4.0, 0)
