"""The internal dataset format shared by every stage.

A :class:`RecDataset` holds contiguous ids ``0..n_users-1`` / ``0..n_items-1``, the three
interaction splits as int64 arrays of shape [N, 2] (user, item), and side tables:

- ``users``: one row per user id, at least ``raw_id`` (MovieLens adds age, gender,
  occupation);
- ``items``: one row per item id, at least ``raw_id`` (MovieLens adds title, year, genres);
- ``profiles``: optional given profile texts (RLMRec release), ``{"user": [...], "item": [...]}``;
- ``timestamps``: optional interaction times (MovieLens: seconds since 1970) per split, int64
  [N] aligned with that split's pairs (what time-ordered protocols such as leave-one-out
  and sequential models need); None when the source has none (RLMRec release).

On disk (``data/processed/<name>/``): ``interactions.npz``, ``users.csv``, ``items.csv``,
``meta.json`` and optionally ``profiles.json``. :func:`save_dataset` writes into a temporary
folder and renames it into place, so a failed run never leaves a partial dataset.
"""

from __future__ import annotations

import json
import shutil
import tempfile
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import scipy.sparse as sp

from facelib.data.errors import DataError
from facelib.io import publish
from facelib.data.movielens import RawTables
from facelib.data.split import split_interactions

SPLITS = ("train", "valid", "test")
FORMAT_VERSION = 1


@dataclass
class RecDataset:
    """Implicit-feedback dataset with a fixed train/valid/test split."""

    name: str
    n_users: int
    n_items: int
    train: np.ndarray  # [N_train, 2] int64 (user, item)
    valid: np.ndarray  # [N_valid, 2]
    test: np.ndarray  # [N_test, 2]
    users: pd.DataFrame
    items: pd.DataFrame
    item_noun: str = "movie"
    profiles: dict[str, list[str]] | None = None
    meta: dict[str, Any] = field(default_factory=dict)
    timestamps: dict[str, np.ndarray] | None = None  # split -> int64 [N_split]

    def split(self, name: str) -> np.ndarray:
        if name not in SPLITS:
            raise ValueError(f"unknown split {name!r}; choose one of {', '.join(SPLITS)}")
        return getattr(self, name)

    def times(self, name: str) -> np.ndarray:
        """Interaction times of one split, int64 [N] aligned with :meth:`split`; raises
        when the dataset has none."""
        if self.timestamps is None:
            raise DataError(f"dataset {self.name} has no interaction timestamps (the RLMRec "
                            f"release has none); use a MovieLens or synthetic dataset")
        self.split(name)
        return self.timestamps[name]

    def matrix(self, name: str = "train") -> sp.csr_matrix:
        """Binary user-item matrix R of one split, [n_users, n_items] float32 CSR."""
        pairs = self.split(name)
        data = np.ones(len(pairs), dtype=np.float32)
        return sp.csr_matrix((data, (pairs[:, 0], pairs[:, 1])),
                             shape=(self.n_users, self.n_items))

    def user_items(self, name: str = "train") -> list[np.ndarray]:
        """Per-user sorted item ids of one split (length n_users)."""
        m = self.matrix(name)
        return [m.indices[m.indptr[u]:m.indptr[u + 1]].copy() for u in range(self.n_users)]

    def stats(self) -> dict[str, Any]:
        """Counts and density per split (the ``data`` metric)."""
        n = {s: int(len(self.split(s))) for s in SPLITS}
        total = sum(n.values())
        return {
            "dataset": self.name,
            "users": int(self.n_users),
            "items": int(self.n_items),
            "interactions": total,
            "train": n["train"],
            "valid": n["valid"],
            "test": n["test"],
            "density": round(total / (self.n_users * self.n_items), 6),
            "users_with_test": int(len(np.unique(self.test[:, 0]))),
            "users_with_valid": int(len(np.unique(self.valid[:, 0]))),
        }

    def validate(self) -> None:
        """Check the split invariants; raise :class:`DataError` when one fails."""
        for s in SPLITS:
            a = self.split(s)
            if a.ndim != 2 or a.shape[1] != 2 or len(a) and (
                a[:, 0].min() < 0 or a[:, 0].max() >= self.n_users
                or a[:, 1].min() < 0 or a[:, 1].max() >= self.n_items
            ):
                raise DataError(f"dataset {self.name}: split {s} has out-of-range ids; "
                                f"rebuild it with the data stage")
        keys = [set((a[:, 0] * self.n_items + a[:, 1]).tolist()) for a in
                (self.train, self.valid, self.test)]
        if keys[0] & keys[1] or keys[0] & keys[2] or keys[1] & keys[2]:
            raise DataError(f"dataset {self.name}: splits overlap; rebuild it with the data stage")
        if len(np.unique(self.train[:, 0])) != self.n_users or \
                len(np.unique(self.train[:, 1])) != self.n_items:
            raise DataError(f"dataset {self.name}: some user or item has no training "
                            f"interaction; rebuild it with the data stage")


def build_dataset(
    name: str,
    raw: RawTables,
    min_rating: float,
    seed: int,
    ratios: tuple[float, float, float] = (3.0, 1.0, 1.0),
    item_noun: str = "movie",
) -> RecDataset:
    """Binarise ratings (``rating >= min_rating`` is a positive), drop duplicates, map ids of
    users/items with at least one positive to contiguous ids (sorted by raw id), split."""
    r = raw.ratings
    cols = ["user", "item"] + (["timestamp"] if "timestamp" in r else [])
    # a repeated (user, item) keeps its earliest rating time
    pos = (r.loc[r["rating"] >= min_rating, cols].sort_values(cols[2:], kind="stable")
           .drop_duplicates(["user", "item"]))
    if pos.empty:
        raise DataError(f"no rating >= {min_rating} in {name}; lower data.min_rating")
    unknown_items = set(pos["item"]) - set(raw.items["raw_id"])
    unknown_users = set(pos["user"]) - set(raw.users["raw_id"])
    if unknown_items or unknown_users:
        raise DataError(f"{name}: ratings name {len(unknown_users)} unknown user(s) and "
                        f"{len(unknown_items)} unknown item(s); the raw files are corrupt, "
                        f"delete them and run the data stage again")

    def _ids(raw_ids: pd.Series) -> pd.Index:
        uniq = pd.unique(raw_ids)
        as_int = pd.to_numeric(pd.Series(uniq), errors="coerce")
        order = np.argsort(as_int.to_numpy()) if not as_int.isna().any() else np.argsort(uniq)
        return pd.Index(uniq[order])

    user_index, item_index = _ids(pos["user"]), _ids(pos["item"])
    pairs = np.stack([user_index.get_indexer(pos["user"]),
                      item_index.get_indexer(pos["item"])], axis=1).astype(np.int64)
    train, valid, test = split_interactions(pairs, len(user_index), len(item_index), seed, ratios)
    timestamps = None
    if "timestamp" in pos:
        n_items = len(item_index)
        keys = pairs[:, 0] * n_items + pairs[:, 1]
        order = np.argsort(keys)
        when = pos["timestamp"].to_numpy(np.int64)[order]
        timestamps = {name: when[np.searchsorted(keys[order], a[:, 0] * n_items + a[:, 1])]
                      for name, a in zip(SPLITS, (train, valid, test))}

    users = raw.users.set_index("raw_id").loc[user_index].reset_index()
    items = raw.items.set_index("raw_id").loc[item_index].reset_index()
    ds = RecDataset(
        name=name, n_users=len(user_index), n_items=len(item_index),
        train=train, valid=valid, test=test, users=users, items=items, item_noun=item_noun,
        meta={"min_rating": min_rating, "seed": seed, "ratios": list(ratios),
              "raw_ratings": int(len(r)), "raw_users": int(len(raw.users)),
              "raw_items": int(len(raw.items))},
        timestamps=timestamps,
    )
    ds.validate()
    return ds


def save_dataset(ds: RecDataset, out_dir: Path) -> Path:
    """Write ``ds`` to ``out_dir`` atomically (temporary folder + rename)."""
    out_dir = Path(out_dir)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}-", dir=out_dir.parent))
    try:
        times = ({f"{k}_time": v for k, v in ds.timestamps.items()}
                 if ds.timestamps is not None else {})
        np.savez_compressed(tmp / "interactions.npz", train=ds.train, valid=ds.valid,
                            test=ds.test, shape=np.array([ds.n_users, ds.n_items]), **times)
        ds.users.to_csv(tmp / "users.csv", index_label="user_id")
        ds.items.to_csv(tmp / "items.csv", index_label="item_id")
        if ds.profiles is not None:
            (tmp / "profiles.json").write_text(json.dumps(ds.profiles))
        meta = {"format": FORMAT_VERSION, "name": ds.name, "item_noun": ds.item_noun, **ds.meta}
        (tmp / "meta.json").write_text(json.dumps(meta, indent=2))
        if out_dir.exists():
            shutil.rmtree(out_dir)
        publish(tmp, out_dir)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return out_dir


def load_dataset(path: Path) -> RecDataset:
    """Load a processed dataset folder written by :func:`save_dataset`."""
    path = Path(path)
    if not (path / "meta.json").is_file():
        raise DataError(f"no processed dataset at {path}; run the data stage first "
                        f"(`dvc repro data` or notebooks/10_data.ipynb)")
    try:
        meta = json.loads((path / "meta.json").read_text())
        with np.load(path / "interactions.npz") as z:
            train, valid, test, shape = z["train"], z["valid"], z["test"], z["shape"]
            timestamps = ({s: z[f"{s}_time"] for s in SPLITS}
                          if all(f"{s}_time" in z for s in SPLITS) else None)
        users = pd.read_csv(path / "users.csv", index_col="user_id", keep_default_na=False)
        items = pd.read_csv(path / "items.csv", index_col="item_id", keep_default_na=False)
        profiles_path = path / "profiles.json"
        profiles = json.loads(profiles_path.read_text()) if profiles_path.exists() else None
    except (OSError, ValueError, KeyError, zipfile.BadZipFile, EOFError) as exc:
        raise DataError(f"processed dataset at {path} is corrupt ({type(exc).__name__}); "
                        f"run the data stage again") from None
    if meta.get("format") != FORMAT_VERSION:
        raise DataError(f"processed dataset at {path} has format {meta.get('format')}, "
                        f"expected {FORMAT_VERSION}; run the data stage again")
    name, noun = meta.pop("name"), meta.pop("item_noun")
    meta.pop("format")
    ds = RecDataset(name=name, n_users=int(shape[0]), n_items=int(shape[1]), train=train,
                    valid=valid, test=test, users=users, items=items, item_noun=noun,
                    profiles=profiles, meta=meta, timestamps=timestamps)
    if len(users) != ds.n_users or len(items) != ds.n_items:
        raise DataError(f"processed dataset at {path} is inconsistent (side tables vs ids); "
                        f"run the data stage again")
    return ds
