"""Checkpoints that let an interrupted run continue exactly where it stopped.

A checkpoint holds the model and optimiser state, the epoch, the best state so far and its
metric, the early-stopping counter, the per-epoch history, the run's parameters (checked on
resume) and the RNG states of torch (CPU and CUDA), NumPy and Python. It is written
atomically (temporary file in the same folder + ``os.replace``), so a crash mid-write
leaves the previous checkpoint intact.
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import numpy as np
import torch

from facelib.io import atomic_file

FORMAT = 2


class CheckpointError(RuntimeError):
    """A checkpoint is missing, unreadable, or belongs to another run."""


def rng_state(rng: np.random.Generator) -> dict[str, Any]:
    """Snapshot of every random number generator the training loop touches."""
    state: dict[str, Any] = {
        "numpy": rng.bit_generator.state,
        "numpy_global": np.random.get_state(legacy=False),
        "python": random.getstate(),
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng(state: dict[str, Any], rng: np.random.Generator) -> None:
    """Put every generator back to ``state`` (``rng`` is updated in place)."""
    rng.bit_generator.state = state["numpy"]
    np.random.set_state(state["numpy_global"])
    random.setstate(state["python"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save_checkpoint(state: dict[str, Any], path: Path) -> Path:
    """``torch.save`` atomically."""
    with atomic_file(path, "wb") as fh:
        torch.save({"format": FORMAT, **state}, fh)
    return Path(path)


def load_checkpoint(path: Path, map_location: str | torch.device = "cpu",
                    made_by: str | None = None) -> dict[str, Any]:
    """Read a checkpoint written by :func:`save_checkpoint`. ``made_by`` names the stage
    that publishes it (the fix for a missing or corrupt one is to rerun that stage); without
    it the checkpoint is a run's resumable state (the fix is to start afresh)."""
    path = Path(path)
    fix = (f"rerun the {made_by} stage (dvc repro {made_by})" if made_by
           else "run without resume to start afresh")
    if not path.is_file():
        raise CheckpointError(f"no checkpoint at {path}; {fix}")
    try:
        state = torch.load(path, map_location=map_location, weights_only=False)
    except Exception as exc:  # noqa: BLE001 - any unpickling problem is "corrupt"
        if not made_by:
            fix = "delete it and run without resume"
        raise CheckpointError(f"checkpoint {path} is unreadable ({type(exc).__name__}); "
                              f"{fix}") from None
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise CheckpointError(f"checkpoint {path} has an unknown format; {fix}")
    return state


def check_same_run(saved: dict[str, Any], current: dict[str, Any], path: Path) -> None:
    """Raise when the parameters stored in a checkpoint differ from the current ones,
    naming the first differing key."""
    for key in sorted(set(saved) | set(current)):
        if saved.get(key, "<missing>") != current.get(key, "<missing>"):
            raise CheckpointError(
                f"checkpoint {path} belongs to another run: {key} is "
                f"{saved.get(key, '<missing>')!r} there but {current.get(key, '<missing>')!r} "
                f"now; restore the value or run without resume")
