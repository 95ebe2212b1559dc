"""Data: acquisition (offline-safe), parsing, implicit feedback, split, RLMRec importer."""

from facelib.data.acquire import SOURCES, obtain_raw
from facelib.data.dataset import RecDataset, build_dataset, load_dataset, save_dataset
from facelib.data.errors import DataError
from facelib.data.movielens import RawTables, read_movielens
from facelib.data.rlmrec import import_rlmrec
from facelib.data.split import split_interactions
from facelib.data.prepare import DataParams, prepare_dataset
from facelib.data.synthetic import make_synthetic

__all__ = [
    "SOURCES", "DataError", "DataParams", "prepare_dataset", "RawTables", "RecDataset", "build_dataset", "import_rlmrec",
    "load_dataset", "make_synthetic", "obtain_raw", "read_movielens", "save_dataset",
    "split_interactions",
]
