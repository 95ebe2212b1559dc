"""Atomic writes: outputs appear complete or not at all.

:func:`atomic_file` is the one mechanism for a file (a temporary file beside the target,
renamed onto it when the writer finished, removed when it failed); the helpers below are its
common uses. :class:`StagedOutputs` does the same for all the files of one run.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from matplotlib.figure import Figure


def publish(tmp: str | Path, path: Path) -> Path:
    """Give a finished temporary file or folder ordinary permissions (mkstemp/mkdtemp
    create them private) and rename it onto ``path`` in one step."""
    os.chmod(tmp, 0o755 if Path(tmp).is_dir() else 0o644)
    os.replace(tmp, path)
    return Path(path)


@contextmanager
def atomic_file(path: Path, mode: str = "w") -> Iterator[IO[Any]]:
    """Open a temporary file in ``path``'s folder (``mode`` "w" text, UTF-8, or "wb");
    when the block ends normally it replaces ``path``, when it raises it is removed."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}-", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, mode, **({} if "b" in mode else {"encoding": "utf-8"})) as fh:
            yield fh
        publish(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def write_text(text: str, path: Path) -> Path:
    """Write ``text`` atomically."""
    with atomic_file(path) as fh:
        fh.write(text)
    return Path(path)


def write_json(obj: dict[str, Any], path: Path) -> Path:
    """Write ``obj`` as pretty, key-sorted JSON, atomically."""
    return write_text(json.dumps(obj, indent=2, sort_keys=True) + "\n", path)


def save_npy(array: np.ndarray, path: Path) -> Path:
    """``np.save`` atomically."""
    with atomic_file(path, "wb") as fh:
        np.save(fh, array)
    return Path(path)


def save_figure(fig: Figure, path: Path, dpi: int = 110) -> Path:
    """``fig.savefig`` as PNG, atomically (no software tag: same figure, same bytes)."""
    with atomic_file(path, "wb") as fh:
        fig.savefig(fh, format="png", dpi=dpi, bbox_inches="tight",
                    metadata={"Software": None})
    return Path(path)


class StagedOutputs:
    """A run's output files, written into a staging folder and published together.

    ``staged(path)`` gives the staging file to write in place of ``path`` (the target);
    :meth:`publish` moves every staged file onto its target in one sweep after the run has
    finished, and removes ``stale`` targets this run no longer makes (e.g. an older run's
    control checkpoint), so the files on disk always belong to one finished run. Use it as
    a context manager: a run that raises (or is interrupted) publishes nothing and leaves
    the previous outputs as they were.
    """

    def __init__(self, root: Path) -> None:
        root = Path(root)
        root.mkdir(parents=True, exist_ok=True)
        self.folder = Path(tempfile.mkdtemp(prefix=".staging-", dir=root))
        self._targets: dict[Path, Path] = {}

    def __call__(self, path: Path) -> Path:
        """The staging path to write instead of ``path`` (its folder exists)."""
        path = Path(path).resolve()
        staged = self.folder / f"{len(self._targets):03d}-{path.name}"
        self._targets[path] = staged
        return staged

    def publish(self, stale: list[Path] | tuple[Path, ...] = ()) -> list[Path]:
        """Move every staged file onto its target; delete ``stale`` targets; return the
        published paths."""
        missing = [str(t) for t, s in self._targets.items() if not s.exists()]
        if missing:
            raise RuntimeError(f"staged output(s) never written: {', '.join(missing)}")
        for target, staged in self._targets.items():
            target.parent.mkdir(parents=True, exist_ok=True)
            publish(staged, target)
        for path in stale:
            if Path(path).resolve() not in self._targets and Path(path).exists():
                os.remove(path)
        return list(self._targets)

    def discard(self) -> None:
        import shutil

        shutil.rmtree(self.folder, ignore_errors=True)

    def __enter__(self) -> StagedOutputs:
        return self

    def __exit__(self, *exc: object) -> None:
        self.discard()
