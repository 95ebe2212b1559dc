"""Which systems feed the results table, and where their numbers live.

A :class:`System` names one row family of the table: the metrics JSON it is read from (a
path pattern with ``{backbone}``, ``{seed}`` and ``{dataset}`` placeholders, relative to
the repository root), the dotted key of the test-metrics dict inside that JSON, and
optionally the per-user arrays its stage writes for paired tests. The table is built from
:data:`SYSTEMS` in order: the most-popular floor and the base models (``train_cf``), then
the rows each system folder declares in its ``rows.py`` (``facelib/systems/face/rows.py``,
``facelib/systems/rlmrec/rows.py``), e.g.::

    System("rlmrec_con", "RLMRec-Con", "RLMRec-Con",
           "reports/metrics/related/rlmrec/{backbone}-{seed}.json", "con.test",
           stage="related/dvc.yaml:related", required=False,
           per_user=("data/related/rlmrec/{dataset}/{backbone}-{seed}/per_user.npz",
                     "rlmrec_con"), compare=("base", "face"))

Two tables are built from it (:data:`TABLES`, the results stage's ``table``): ``study``
(``dvc.yaml``: the floor, the base models and every row but the related systems') and
``related`` (``related/dvc.yaml``, ``make related``: the floor, the base models, FACE and
its control read beside the rows written by the related pipeline's stages,
:func:`is_related`, on the study's backbones and ``study.extra_regularized``).
:func:`table_rows` gives a table's rows; each row is tested against its own references
among them (:func:`own_comparisons`).

Per-user files (``.npz``) hold ``users`` [M] int64 (the evaluated test users, ascending)
and one float64 [M] array per system and metric named ``"<prefix>.<metric>"``
(``face.recall@20``, ``base.ndcg@5``, ...), all aligned with ``users``.
"""

from __future__ import annotations

import importlib
import json
import zipfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Any

import numpy as np

from facelib.data.errors import DataError
from facelib.eval import KS
from facelib.systems.rows import System
from facelib.systems import ROWS_MODULE, systems

METRICS: tuple[str, ...] = tuple(f"{m}@{k}" for m in ("recall", "ndcg") for k in KS)
CF_PER_USER = "data/cf/{dataset}/per_user-{backbone}-{seed}.npz"


def system_rows() -> dict[str, tuple[System, ...]]:
    """Each system's rows of the results table (``facelib/systems/<name>/rows.py``), in
    :func:`facelib.systems.systems` order."""
    return {name: tuple(importlib.import_module(ROWS_MODULE.format(name=name)).ROWS)
            for name in systems()}


def result_rows() -> tuple[System, ...]:
    """Every system's rows of the results table, in :func:`facelib.systems.systems` order."""
    return tuple(row for rows in system_rows().values() for row in rows)


class ResultsError(DataError):
    """An input of the results stage is missing or inconsistent (one-line message)."""


BASE_ROWS: tuple[System, ...] = (
    System("most_popular", "Most popular", "the most-popular floor",
           "reports/metrics/cf/most_popular.json", "test", stage="train_cf_floor"),
    System("base", "Base (train_cf)", "the base model",
           "reports/metrics/cf/{backbone}-{seed}.json", "test", stage="train_cf",
           per_user=(CF_PER_USER, "base")),
)
SYSTEMS: Mapping[str, System] = MappingProxyType({s.name: s for s in (
    *BASE_ROWS, *result_rows())})


TABLES = ("study", "related")  # the results stage's tables (params: results.table)
RELATED_PIPELINE = "related/dvc.yaml"  # its stages write the related rows
# the study's rows the related table repeats
READ_BESIDE = ("most_popular", "base", "control", "face")


def is_related(row: System) -> bool:
    """Whether a stage of the related pipeline writes ``row``."""
    return row.stage.startswith(f"{RELATED_PIPELINE}:")


def table_rows(table: str) -> list[str]:
    """The rows of ``table``: ``study`` has every row not written by the related pipeline
    (:data:`SYSTEMS` order); ``related`` has :data:`READ_BESIDE`, then the related rows."""
    if table not in TABLES:
        raise ValueError(f"unknown table {table!r}; choose one of {', '.join(TABLES)}")
    related = [s.name for s in SYSTEMS.values() if is_related(s)]
    if table == "study":
        return [name for name in SYSTEMS if name not in related]
    return [*READ_BESIDE, *related]


def own_comparisons(rows: Sequence[str]) -> list[list[str]]:
    """Each of ``rows`` against its own references (``System.compare``) among ``rows``."""
    return [[name, ref] for name in rows for ref in SYSTEMS[name].compare if ref in rows]


@dataclass(frozen=True)
class Run:
    """Test metrics of one system on one backbone and seed (seed None: unseeded)."""

    system: str
    backbone: str | None
    seed: int | None
    metrics: dict[str, float]
    source: Path
    record: dict[str, Any]


def _dig(record: Any, key: str) -> Any:
    for part in key.split("."):
        if not isinstance(record, dict):
            return None
        record = record.get(part)
    return record


def _rel(path: Path, root: Path) -> str:
    try:
        return str(path.relative_to(root))
    except ValueError:
        return str(path)


def _missing(system: System, path: Path, root: Path) -> ResultsError:
    return ResultsError(f"no {system.label} metrics: {_rel(path, root)} is missing; run "
                        f"its stage first: dvc repro {system.stage}")


def _where(root: Path, system: System, backbone: str | None, seed: int | None,
           dataset: str) -> tuple[str, str | None]:
    """(metrics JSON, per-user npz) of one run, relative to ``root``: the system's own
    paths, or its ``elsewhere`` ones when only those hold the run."""
    fill = {"backbone": backbone, "seed": seed, "dataset": dataset}
    own = (system.metrics, system.per_user[0] if system.per_user else None)
    if system.elsewhere is not None and not (root / own[0].format(**fill)).is_file() \
            and (root / system.elsewhere[0].format(**fill)).is_file():
        own = system.elsewhere
    return own[0].format(**fill), own[1].format(**fill) if own[1] else None


def load_runs(root: Path, systems: Sequence[str], backbones: Sequence[str],
              seeds: Sequence[int], dataset: str,
              registry: Mapping[str, System] = SYSTEMS) -> list[Run]:
    """Read the test metrics of every system x backbone x seed below ``root``.

    Raises :class:`ResultsError` for a missing file of a required system, a file of
    another dataset, or a metrics dict without the expected keys.
    """
    runs: list[Run] = []
    for name in systems:
        system = registry[name]
        for backbone in (backbones if system.per_backbone else [None]):
            for seed in (seeds if system.seeded else [None]):
                rel = _where(root, system, backbone, seed, dataset)[0]
                path = root / rel
                if not path.is_file():
                    if system.required:
                        raise _missing(system, path, root)
                    continue
                try:
                    record = json.loads(path.read_text())
                except json.JSONDecodeError as exc:
                    raise ResultsError(f"{rel} is not valid JSON ({exc.msg}); re-run: "
                                       f"dvc repro {system.stage}") from None
                if record.get("dataset", dataset) != dataset:
                    raise ResultsError(f"{rel} is for dataset {record['dataset']!r}, not "
                                       f"{dataset!r}; re-run: dvc repro {system.stage}")
                values = _dig(record, system.key)
                if values is None:
                    if system.required:
                        raise ResultsError(f"{rel} has no {system.key!r}; re-run: "
                                           f"dvc repro {system.stage}")
                    continue
                lost = [m for m in METRICS if m not in values]
                if lost:
                    raise ResultsError(f"{rel} [{system.key}] lacks {', '.join(lost)}; "
                                       f"re-run: dvc repro {system.stage}")
                runs.append(Run(name, backbone, seed, {m: float(values[m]) for m in METRICS},
                                path, record))
    return runs


def load_per_user(root: Path, system: System, backbone: str, seeds: Sequence[int],
                  dataset: str, metrics: Sequence[str]
                  ) -> tuple[np.ndarray, dict[str, np.ndarray]] | None:
    """Per-user test metrics of ``system`` on ``backbone``, averaged over ``seeds``.

    Returns ``(users [M], {metric: [M] mean over seeds})``, or None when the system was not
    run (its arrays are absent and it is not required). The split is fixed, so every seed
    must evaluate the same users; a mismatch is an error.
    """
    if system.per_user is None:
        raise ResultsError(f"{system.label} has no per-user metrics to test")
    prefix = system.per_user[1]
    files = [_where(root, system, backbone, seed, dataset) for seed in seeds]
    if not system.required and not any((root / f).is_file() for pair in files
                                       for f in pair if f):
        return None  # not run on this backbone (e.g. a related system beside LightGCL)
    users: np.ndarray | None = None
    sums: dict[str, np.ndarray] = {}
    for seed, (_, rel) in zip(seeds, files):
        assert rel is not None  # system.per_user is set
        path = root / rel
        if not path.is_file():
            raise ResultsError(f"per-user test metrics missing: {rel}; re-run the "
                               f"{system.stage} stage: dvc repro {system.stage}")
        try:
            npz_file = np.load(path)
        except (OSError, ValueError, EOFError, zipfile.BadZipFile) as exc:
            raise ResultsError(f"per-user test metrics {rel} are unreadable "
                               f"({type(exc).__name__}); re-run: dvc repro {system.stage}"
                               ) from None
        with npz_file as npz:
            names = [f"{prefix}.{m}" for m in metrics]
            if not all(n in npz for n in names):
                if system.required or any(n in npz for n in names):
                    lost = [n for n in names if n not in npz]
                    raise ResultsError(f"{rel} lacks {', '.join(lost)}; re-run: "
                                       f"dvc repro {system.stage}")
                return None
            these = np.asarray(npz["users"], dtype=np.int64)
            if users is None:
                users = these
            elif not np.array_equal(users, these):
                raise ResultsError(f"{rel}: test users differ from seed {seeds[0]}'s; the "
                                   f"split must be fixed across seeds (re-run dvc repro)")
            for m, n in zip(metrics, names):
                values = np.asarray(npz[n], dtype=np.float64)
                if values.shape != these.shape:
                    raise ResultsError(f"{rel}: {n} has shape {values.shape}, users "
                                       f"{these.shape}; re-run: dvc repro {system.stage}")
                sums[m] = sums.get(m, 0.0) + values
    assert users is not None
    return users, {m: v / len(seeds) for m, v in sums.items()}

