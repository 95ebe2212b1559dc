"""Importer for the RLMRec release format (Amazon-book, Yelp, Steam as FACE uses them).

A folder holds ``trn_mat.pkl``, ``val_mat.pkl``, ``tst_mat.pkl`` (scipy sparse matrices
[n_users, n_items], non-zeros are interactions) and ``usr_prf.pkl``, ``itm_prf.pkl``
(id -> ``{"profile": str, "reasoning": str}``). The split is taken as released; the given
LLM-written profiles are kept and used by the text stage instead of template profiles.
"""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pandas as pd
import scipy.sparse as sp

from facelib.data.dataset import RecDataset
from facelib.data.errors import DataError

RLMREC_FILES = ("trn_mat.pkl", "val_mat.pkl", "tst_mat.pkl", "usr_prf.pkl", "itm_prf.pkl")
ITEM_NOUNS = {"amazon": "book", "yelp": "restaurant", "steam": "game"}


def _load_pickle(path: Path) -> object:
    if not path.is_file():
        raise DataError(f"RLMRec file {path} is missing; the folder needs "
                        f"{', '.join(RLMREC_FILES)}")
    try:
        with open(path, "rb") as fh:
            return pickle.load(fh)
    except Exception as exc:  # noqa: BLE001 - any unpickling failure means a corrupt file
        raise DataError(f"RLMRec file {path} is corrupt ({type(exc).__name__}); download "
                        f"it again") from None


def _pairs(mat: object, path: Path, shape: tuple[int, int] | None) -> np.ndarray:
    if not sp.issparse(mat):
        raise DataError(f"RLMRec file {path} holds {type(mat).__name__}, expected a scipy "
                        f"sparse matrix; download it again")
    coo = sp.coo_matrix(mat)
    if shape is not None and coo.shape != shape:
        raise DataError(f"RLMRec file {path} has shape {coo.shape}, expected {shape} "
                        f"like trn_mat.pkl; the files come from different releases")
    coo.sum_duplicates()
    keep = coo.data != 0
    pairs = np.stack([coo.row[keep], coo.col[keep]], axis=1).astype(np.int64)
    return pairs[np.lexsort((pairs[:, 1], pairs[:, 0]))]


def _profiles(obj: object, path: Path, n: int) -> list[str]:
    if not isinstance(obj, dict):
        raise DataError(f"RLMRec file {path} holds {type(obj).__name__}, expected a dict "
                        f"id -> {{'profile': ...}}; download it again")
    out = []
    for i in range(n):
        entry = obj.get(i)
        text = entry.get("profile") if isinstance(entry, dict) else entry
        if not isinstance(text, str):
            raise DataError(f"RLMRec file {path} has no profile text for id {i}; download "
                            f"it again")
        out.append(text.strip())
    return out


def import_rlmrec(folder: Path, name: str, item_noun: str | None = None) -> RecDataset:
    """Read an RLMRec-format folder into a :class:`RecDataset` (split as released)."""
    folder = Path(folder)
    if not folder.is_dir():
        raise DataError(f"RLMRec folder {folder} does not exist; point data.rlmrec_dir at "
                        f"the folder holding {', '.join(RLMREC_FILES)}")
    trn_path = folder / "trn_mat.pkl"
    trn = _load_pickle(trn_path)
    train = _pairs(trn, trn_path, None)
    n_users, n_items = sp.coo_matrix(trn).shape
    valid = _pairs(_load_pickle(folder / "val_mat.pkl"), folder / "val_mat.pkl",
                   (n_users, n_items))
    test = _pairs(_load_pickle(folder / "tst_mat.pkl"), folder / "tst_mat.pkl",
                  (n_users, n_items))
    profiles = {
        "user": _profiles(_load_pickle(folder / "usr_prf.pkl"), folder / "usr_prf.pkl", n_users),
        "item": _profiles(_load_pickle(folder / "itm_prf.pkl"), folder / "itm_prf.pkl", n_items),
    }
    ds = RecDataset(
        name=name, n_users=n_users, n_items=n_items, train=train, valid=valid, test=test,
        users=pd.DataFrame({"raw_id": np.arange(n_users)}),
        items=pd.DataFrame({"raw_id": np.arange(n_items)}),
        item_noun=item_noun or ITEM_NOUNS.get(name, "item"), profiles=profiles,
        meta={"source": "rlmrec", "folder": str(folder)},
    )
    ds.validate()
    return ds
