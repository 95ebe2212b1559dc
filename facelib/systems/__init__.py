"""The systems read beside each other: one folder per system.

A system folder holds its model, its params section, its stage and its rows of the results
table (``rows.py``: ``ROWS``, a tuple of :class:`facelib.results.rows.System`). Adding a
system = its folder, its name in :data:`SYSTEMS`, its ``params.yaml`` section and its line
in the DVC matrix of the ``regularize`` stage.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from facelib.results.rows import System

SYSTEMS: tuple[str, ...] = ("face",)


def result_rows() -> tuple[System, ...]:
    """Every system's rows of the results table, in :data:`SYSTEMS` order."""
    return tuple(row for name in SYSTEMS
                 for row in importlib.import_module(f"facelib.systems.{name}.rows").ROWS)
