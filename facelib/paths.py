"""Repository-root anchored paths.

Every path the pipeline reads or writes is derived from :func:`repo_root`, so notebooks,
DVC stages and tests agree whatever the working directory is.
"""

from __future__ import annotations

import os
from pathlib import Path

_ROOT_MARKERS = ("params.yaml", "pyproject.toml")


def repo_root() -> Path:
    """The repository root: ``$FACELIB_ROOT`` if set, else the first parent holding
    ``params.yaml`` and ``pyproject.toml`` (searched from this file, then the cwd)."""
    env = os.environ.get("FACELIB_ROOT")
    if env:
        return Path(env).resolve()
    for start in (Path(__file__).resolve().parent, Path.cwd().resolve()):
        for candidate in (start, *start.parents):
            if all((candidate / m).exists() for m in _ROOT_MARKERS):
                return candidate
    raise FileNotFoundError(
        "cannot find the facelib repository root (params.yaml + pyproject.toml); "
        "run from inside the repository or set FACELIB_ROOT"
    )


def data_dir() -> Path:
    """Git-ignored folder for downloads, raw and processed data."""
    return repo_root() / "data"


def raw_dir(dataset: str) -> Path:
    return data_dir() / "raw" / dataset


def processed_dir(dataset: str) -> Path:
    return data_dir() / "processed" / dataset


def text_dir(dataset: str) -> Path:
    return data_dir() / "text" / dataset


def checkpoint_dir() -> Path:
    return repo_root() / "checkpoints"


def reports_dir() -> Path:
    return repo_root() / "reports"


def metrics_dir() -> Path:
    return reports_dir() / "metrics"
