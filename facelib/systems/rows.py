"""A row family of the results table: which system, and where its numbers live.

Each system folder declares its rows (``facelib/systems/<name>/rows.py``); the base CF
models and the most-popular floor are declared in :mod:`facelib.results.systems`, which
collects them all.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class System:
    """One system of the results table.

    Attributes:
        name: key used in ``params.yaml``, CSV files and ``results.json``.
        label: text of its table row; phrase: how a sentence names it ("the control run").
        metrics: JSON path pattern; without ``{backbone}`` the system is backbone-free (one
            row for all backbones), without ``{seed}`` it has one run (no spread).
        key: dotted path of the test-metrics dict in that JSON; a ``null`` on the way
            means "not run" (the row is left out, e.g. a face run without control).
        stage: the DVC stage that writes the file (named in error messages).
        required: a missing file is an error (True) or an empty row (False).
        per_user: (npz path pattern, array prefix) of per-user test metrics, or None.
        compare: the rows this one is tested against by default (paired tests).
        elsewhere: (metrics, per-user npz) path patterns of the same row written by another
            pipeline (the related pipeline's runs on ``study.extra_regularized``), read
            where the ``metrics`` file is missing; None: nowhere else.
    """

    name: str
    label: str
    phrase: str
    metrics: str
    key: str
    stage: str
    required: bool = True
    per_user: tuple[str, str] | None = None
    compare: tuple[str, ...] = ()
    elsewhere: tuple[str, str] | None = None

    @property
    def seeded(self) -> bool:
        return "{seed}" in self.metrics

    @property
    def per_backbone(self) -> bool:
        return "{backbone}" in self.metrics
