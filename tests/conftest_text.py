"""Fixtures of the text-stage tests (imported by tests/test_text_*.py).

The packaged MiniLM is loaded once per test session (cached here, because fixtures
imported into several modules would otherwise load it once per module).
"""

from __future__ import annotations

import functools

import pytest

from facelib.data import RecDataset, build_dataset, make_synthetic


@functools.cache
def _encoder():
    from facelib.text.encoder import FrozenEncoder

    return FrozenEncoder.load("cpu")


@pytest.fixture()
def encoder():
    """The real packaged all-MiniLM-L6-v2 on CPU (shared; do not mutate)."""
    enc = _encoder()
    yield enc
    enc.train(False)


@pytest.fixture(scope="session")
def small_ds() -> RecDataset:
    """A 60-user x 40-item synthetic dataset (unique titles by construction)."""
    return build_dataset("synthetic", make_synthetic(60, 40, ratings_per_user=15, seed=1), 4.0, 0)
