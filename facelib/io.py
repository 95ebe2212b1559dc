"""Atomic writes: outputs appear complete or not at all."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

import numpy as np


def publish(tmp: str | Path, path: Path) -> Path:
    """Give a finished temporary file or folder ordinary permissions (mkstemp/mkdtemp
    create them private) and rename it onto ``path`` in one step."""
    os.chmod(tmp, 0o755 if Path(tmp).is_dir() else 0o644)
    os.replace(tmp, path)
    return Path(path)


def write_json(obj: dict[str, Any], path: Path) -> Path:
    """Write ``obj`` as pretty, key-sorted JSON, atomically (temporary file + rename)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}-", dir=path.parent)
    with os.fdopen(fd, "w") as fh:
        fh.write(json.dumps(obj, indent=2, sort_keys=True) + "\n")
    publish(tmp, path)
    return path


def save_npy(array: np.ndarray, path: Path) -> Path:
    """``np.save`` atomically."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.stem}-", suffix=".npy", dir=path.parent)
    with os.fdopen(fd, "wb") as fh:
        np.save(fh, array)
    publish(tmp, path)
    return path
