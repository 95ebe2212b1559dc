"""Hand-made inputs for a standalone smoke run of the results notebook (seconds, no
training): metrics JSON and per-user arrays in the layout the real stages write, below
``build/smoke/results``. The numbers are synthetic and say nothing about FACE.

Per backbone and seed, M users get base metrics, then (means over users in the JSONs):

- LightGCN: control = base + noise, map = base + 0.002, FACE = base + 0.01 + noise
  (a clear gain over both);
- MF: no control run (``control: null``, no ``control.*`` arrays), map = FACE = base +
  noise (no gain);
- every row of the related pipeline (RLMRec-Con, ...): base + half FACE's gain + noise.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from facelib.io import write_json
from facelib.results.systems import CF_PER_USER, METRICS, SYSTEMS, is_related
from facelib.systems.face.rows import METRICS as FACE_METRICS
from facelib.systems.face.rows import PER_USER as FACE_PER_USER

SMOKE_USERS = 200
_BOUNDS = {"batch_size": 128, "map_max_epochs": 3, "align_max_epochs": 2,
           "map_steps_per_epoch": 3, "align_steps_per_epoch": 2, "align_entities": 24,
           "patience": 2, "eval_every": 1, "word_num": 4, "word_dim": 16, "ffn_dim": 64}


def _base_user_metrics(gen: np.random.Generator, n: int) -> dict[str, np.ndarray]:
    """Plausible per-user metrics, non-decreasing in K: [n] float64 each."""
    out: dict[str, np.ndarray] = {}
    for kind, scale in (("recall", 0.12), ("ndcg", 0.2)):
        acc = np.zeros(n)
        for k in (5, 10, 20):
            acc = acc + scale * gen.random(n)
            out[f"{kind}@{k}"] = acc.copy()
    return out


def _shift(values: dict[str, np.ndarray], gen: np.random.Generator, mean: float,
           noise: float) -> dict[str, np.ndarray]:
    return {m: np.clip(v + mean + noise * gen.standard_normal(len(v)), 0.0, 1.0)
            for m, v in values.items()}


def _means(values: dict[str, np.ndarray]) -> dict[str, float]:
    return {m: float(values[m].mean()) for m in METRICS}


def _put(record: dict[str, Any], key: str, value: Any) -> None:
    """``record[a][b]... = value`` for the dotted ``key`` ``a.b...``."""
    *parents, last = key.split(".")
    for part in parents:
        record = record.setdefault(part, {})
    record[last] = value


def _related_rows(root: Path, dataset: str, backbone: str, seed: int,
                  base: dict[str, np.ndarray], gain: float, users: np.ndarray,
                  gen: np.random.Generator) -> None:
    """Metrics JSON and per-user arrays of every row the related pipeline writes."""
    records: dict[Path, dict[str, Any]] = {}
    arrays: dict[Path, dict[str, np.ndarray]] = {}
    for row in (s for s in SYSTEMS.values() if is_related(s)):
        values = _shift(base, gen, gain / 2, 0.004)
        path = root / row.metrics.format(backbone=backbone, seed=seed, dataset=dataset)
        record = records.setdefault(path, {
            "backbone": backbone, "dataset": dataset, "seed": seed,
            "stopped_by": "early_stopping", "profile_builder": "template (smoke)"})
        _put(record, row.key, _means(values))
        if row.per_user is not None:
            pattern, prefix = row.per_user
            npz = root / pattern.format(backbone=backbone, seed=seed, dataset=dataset)
            arrays.setdefault(npz, {}).update({f"{prefix}.{m}": values[m] for m in METRICS})
    for path, record in records.items():
        write_json(record, path)
    for npz, named in arrays.items():
        npz.parent.mkdir(parents=True, exist_ok=True)
        np.savez(npz, users=users, **named)


def prepare_smoke_inputs(dataset: str, backbones: list[str], seeds: list[int],
                         root: Path) -> None:
    """Write the fake inputs of ``backbones`` x ``seeds`` below ``root`` (overwritten)."""
    gen = np.random.default_rng(0)
    users = np.arange(0, 2 * SMOKE_USERS, 2, dtype=np.int64)
    truth = _base_user_metrics(gen, SMOKE_USERS)
    write_json({"dataset": dataset, "seed": 2023, "users": 2 * SMOKE_USERS, "items": 150,
                "test": 4 * SMOKE_USERS}, root / "reports" / "metrics" / "data.json")
    write_json({"backbone": "most_popular", "dataset": dataset,
                "test": _means(_shift(truth, gen, -0.03, 0.0))},
               root / "reports" / "metrics" / "cf" / "most_popular.json")
    for backbone in backbones:
        gain = 0.01 if backbone == "lightgcn" else 0.0
        for seed in seeds:
            base = _shift(truth, gen, 0.0, 0.01)
            systems: dict[str, dict[str, np.ndarray]] = {
                "base": base,
                "map": _shift(base, gen, gain / 5, 0.002),
                "face": _shift(base, gen, gain, 0.004)}
            if backbone == "lightgcn":
                systems["control"] = _shift(base, gen, 0.0, 0.004)
            name = f"{backbone}-{seed}"
            write_json({"backbone": backbone, "dataset": dataset, "seed": seed,
                        "test": _means(base)}, root / "reports" / "metrics" / "cf" / f"{name}.json")
            record: dict[str, Any] = {
                "backbone": backbone, "dataset": dataset, "seed": seed,
                "base": {"test": _means(base), "source": f"reports/metrics/cf/{name}.json"},
                "face": {"test": _means(systems["face"]), "map": {"test": _means(systems["map"])}},
                "control": ({"test": _means(systems["control"])} if "control" in systems
                            else None),
                "bounds": _BOUNDS, "profile_builder": "template (smoke)", "emb_dim": 32,
                "device": "cpu", "switches": {}}
            write_json(record, root / FACE_METRICS.format(backbone=backbone, seed=seed))
            for pattern, names in ((CF_PER_USER, ("base",)),
                                   (FACE_PER_USER, ("map", "face", "control"))):
                npz = root / pattern.format(dataset=dataset, backbone=backbone, seed=seed)
                npz.parent.mkdir(parents=True, exist_ok=True)
                np.savez(npz, users=users, **{f"{s}.{m}": v[m] for s, v in systems.items()
                                              if s in names for m in METRICS})
            _related_rows(root, dataset, backbone, seed, base, gain, users, gen)
