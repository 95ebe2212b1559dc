"""Parse the MovieLens atomic files (RecBole layout) into readable tables.

Output of :func:`read_movielens` is a :class:`RawTables`:

- ``users``: ``raw_id``, ``age`` (a readable band such as ``"25-34"``), ``gender``
  (``"female"``/``"male"``), ``occupation`` (a readable label);
- ``items``: ``raw_id``, ``title`` (articles moved to the front: "The Matrix"), ``year``
  (int, 0 when unknown), ``genres`` (``"|"``-joined labels);
- ``ratings``: ``user``, ``item`` (raw ids), ``rating`` (float), ``timestamp`` (int).
"""

from __future__ import annotations

import csv
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from facelib.data.errors import DataError

AGE_BANDS_ML1M = {1: "under 18", 18: "18-24", 25: "25-34", 35: "35-44", 45: "45-49",
                  50: "50-55", 56: "56 and over"}

OCCUPATIONS_ML1M = [
    "other", "academic/educator", "artist", "clerical/admin", "college/grad student",
    "customer service", "doctor/health care", "executive/managerial", "farmer", "homemaker",
    "K-12 student", "lawyer", "programmer", "retired", "sales/marketing", "scientist",
    "self-employed", "technician/engineer", "tradesman/craftsman", "unemployed", "writer",
]

_ARTICLE = re.compile(r"^(?P<body>.*), (?P<art>The|A|An|Les|La|Le|L'|Il|Das|Die|Der|El)$")


@dataclass
class RawTables:
    """Users, items and explicit ratings of one dataset, before binarisation."""

    users: pd.DataFrame
    items: pd.DataFrame
    ratings: pd.DataFrame


def age_band(age: int) -> str:
    """MovieLens-1M age bands; ages of MovieLens-100k are mapped onto the same bands."""
    for lo, label in sorted(AGE_BANDS_ML1M.items(), reverse=True):
        if age >= lo:
            return label
    return AGE_BANDS_ML1M[1]


def readable_title(title: str) -> str:
    """``"Matrix, The"`` -> ``"The Matrix"``; other titles unchanged."""
    title = title.strip()
    m = _ARTICLE.match(title)
    if not m:
        return title
    art = m["art"]
    return f"{art}{m['body']}" if art.endswith("'") else f"{art} {m['body']}"


def _read_atomic(path: Path, columns: list[str]) -> pd.DataFrame:
    """Read a RecBole atomic file (tab-separated, typed header), checking its columns."""
    if not path.is_file():
        raise DataError(f"raw file {path} is missing; run the data stage to obtain it")
    try:
        df = pd.read_csv(path, sep="\t", dtype=str, quoting=csv.QUOTE_NONE,
                         keep_default_na=False, encoding="utf-8")
    except (UnicodeDecodeError, pd.errors.ParserError, ValueError) as exc:
        raise DataError(f"raw file {path} is corrupt ({type(exc).__name__}); delete "
                        f"{path.parent} and run the data stage again") from None
    df.columns = [c.split(":")[0].strip() for c in df.columns]
    missing = [c for c in columns if c not in df.columns]
    if missing:
        raise DataError(f"raw file {path} lacks column(s) {', '.join(missing)}; delete "
                        f"{path.parent} and run the data stage again")
    return df[columns].apply(lambda s: s.str.strip())


def _to_number(df: pd.DataFrame, col: str, path: Path, kind: type) -> pd.Series:
    values = pd.to_numeric(df[col], errors="coerce")
    if values.isna().any():
        bad = df.loc[values.isna(), col].iloc[0]
        raise DataError(f"raw file {path} has a non-numeric {col} ({bad!r}); delete "
                        f"{path.parent} and run the data stage again")
    return values.astype(kind)


def read_movielens(dataset: str, raw_dir: Path) -> RawTables:
    """Parse MovieLens-1M or -100k atomic files from ``raw_dir``."""
    raw_dir = Path(raw_dir)
    if dataset not in ("ml-1m", "ml-100k"):
        raise DataError(f"unknown MovieLens dataset {dataset!r}; choose ml-1m or ml-100k")
    inter_path = raw_dir / f"{dataset}.inter"
    user_path = raw_dir / f"{dataset}.user"
    item_path = raw_dir / f"{dataset}.item"

    r = _read_atomic(inter_path, ["user_id", "item_id", "rating", "timestamp"])
    ratings = pd.DataFrame({
        "user": r["user_id"].str.removeprefix("1m_"),
        "item": r["item_id"],
        "rating": _to_number(r, "rating", inter_path, float),
        "timestamp": _to_number(r, "timestamp", inter_path, float).astype(np.int64),
    })

    u = _read_atomic(user_path, ["user_id", "age", "gender", "occupation"])
    ages = _to_number(u, "age", user_path, int)
    if dataset == "ml-1m":
        occ_codes = _to_number(u, "occupation", user_path, int)
        if not occ_codes.between(0, len(OCCUPATIONS_ML1M) - 1).all():
            raise DataError(f"raw file {user_path} has unknown occupation codes; delete "
                            f"{raw_dir} and run the data stage again")
        occupation = occ_codes.map(lambda c: OCCUPATIONS_ML1M[c])
    else:
        occupation = u["occupation"].replace({"none": "other"})
    users = pd.DataFrame({
        "raw_id": u["user_id"].str.removeprefix("1m_"),
        "age": ages.map(age_band),
        "gender": u["gender"].map({"F": "female", "M": "male"}).fillna("unknown"),
        "occupation": occupation,
    })

    genre_col = "genre" if dataset == "ml-1m" else "class"
    i = _read_atomic(item_path, ["item_id", "movie_title", "release_year", genre_col])
    years = pd.to_numeric(i["release_year"], errors="coerce").fillna(0).astype(int)
    genres = i[genre_col].map(
        lambda g: "|".join(x for x in g.split() if x and x.lower() != "unknown")
    )
    items = pd.DataFrame({
        "raw_id": i["item_id"],
        "title": i["movie_title"].map(readable_title),
        "year": years,
        "genres": genres,
    })
    if users["raw_id"].duplicated().any() or items["raw_id"].duplicated().any():
        raise DataError(f"raw files in {raw_dir} have duplicate ids; delete {raw_dir} and "
                        f"run the data stage again")
    return RawTables(users=users, items=items, ratings=ratings)
