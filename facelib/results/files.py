"""Atomic writes of text and figures (temporary file in the same folder + rename), so a
failed or interrupted write never leaves a half file where a reader expects a whole one."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

from facelib.io import publish

if TYPE_CHECKING:
    from matplotlib.figure import Figure


def write_text(text: str, path: Path) -> Path:
    """Write ``text`` atomically (temporary file + rename)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}-", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
        return publish(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def save_figure(fig: Figure, path: Path, dpi: int = 110) -> Path:
    """``fig.savefig`` as PNG, atomically."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.stem}-", suffix=".png", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fig.savefig(fh, format="png", dpi=dpi, bbox_inches="tight",
                        metadata={"Software": None})
        return publish(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
