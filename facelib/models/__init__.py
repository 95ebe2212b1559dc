"""CF backbones (BPR-MF, LightGCN, SimGCL), the most-popular floor, and the registry.

    make_backbone("lightgcn", n_users, n_items, params, train_matrix)

``params`` is a :class:`facelib.train.TrainCFParams` or any mapping/object with the fields a
backbone reads (dim, layers, keep_rate, eps, cl_weight, cl_temp).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import scipy.sparse as sp

from facelib.models.base import Backbone, BatchOutput, Regularizer, bpr_loss
from facelib.models.lightgcn import LightGCN
from facelib.models.mf import MF
from facelib.models.popularity import MostPopular
from facelib.models.simgcl import SimGCL


def _get(params: Any, key: str, default: Any = None) -> Any:
    if isinstance(params, Mapping):
        return params.get(key, default)
    return getattr(params, key, default)


BACKBONES: dict[str, Callable[[int, int, Any, sp.spmatrix], Backbone]] = {
    "mf": lambda u, i, p, r: MF(u, i, _get(p, "dim", 64)),
    "lightgcn": lambda u, i, p, r: LightGCN(u, i, _get(p, "dim", 64), r,
                                            layers=_get(p, "layers", 3),
                                            keep_rate=_get(p, "keep_rate", 0.8)),
    "simgcl": lambda u, i, p, r: SimGCL(u, i, _get(p, "dim", 64), r,
                                        layers=_get(p, "layers", 3), eps=_get(p, "eps", 0.9),
                                        cl_weight=_get(p, "cl_weight", 0.1),
                                        cl_temp=_get(p, "cl_temp", 0.2)),
}


def make_backbone(name: str, n_users: int, n_items: int, params: Any,
                  train_matrix: sp.spmatrix) -> Backbone:
    """Build backbone ``name`` for a U x I dataset; graph models use ``train_matrix``."""
    if name not in BACKBONES:
        raise ValueError(f"unknown backbone {name!r}; choose one of {', '.join(BACKBONES)}")
    return BACKBONES[name](n_users, n_items, params, train_matrix)


__all__ = ["BACKBONES", "Backbone", "BatchOutput", "LightGCN", "MF", "MostPopular",
           "Regularizer", "SimGCL", "bpr_loss", "make_backbone"]
