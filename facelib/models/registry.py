"""The one registry of CF backbones: their names, display labels and constructors.

Every params class that names a backbone takes its choices from :data:`BACKBONES`, and
:func:`make_backbone` builds one from typed parameters (a
:class:`facelib.train.TrainCFParams`, or anything with the same fields): no field is
defaulted here, so a value comes from ``params.yaml`` or the params class, never from a
silent fallback.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

import scipy.sparse as sp

from facelib.models.base import Backbone
from facelib.models.lightgcl import LightGCL
from facelib.models.lightgcn import LightGCN
from facelib.models.mf import MF
from facelib.models.simgcl import SimGCL


class BackboneParams(Protocol):
    """The fields a backbone is built from (``params.yaml`` section ``train_cf``)."""

    dim: int
    layers: int
    keep_rate: float
    eps: float
    cl_weight: float
    cl_temp: float
    svd_q: int


@dataclass(frozen=True)
class BackboneSpec:
    """A backbone's display label and its constructor ``(U, I, params, R_train)``."""

    label: str
    build: Callable[[int, int, BackboneParams, sp.spmatrix], Backbone]


SPECS: dict[str, BackboneSpec] = {
    "mf": BackboneSpec("MF", lambda u, i, p, r: MF(u, i, p.dim)),
    "lightgcn": BackboneSpec("LightGCN", lambda u, i, p, r: LightGCN(
        u, i, p.dim, r, layers=p.layers, keep_rate=p.keep_rate)),
    "simgcl": BackboneSpec("SimGCL", lambda u, i, p, r: SimGCL(
        u, i, p.dim, r, layers=p.layers, eps=p.eps, cl_weight=p.cl_weight,
        cl_temp=p.cl_temp)),
    "lightgcl": BackboneSpec("LightGCL", lambda u, i, p, r: LightGCL(
        u, i, p.dim, r, layers=p.layers, svd_q=p.svd_q, cl_weight=p.cl_weight,
        cl_temp=p.cl_temp)),
}
BACKBONES: tuple[str, ...] = tuple(SPECS)


def backbone_label(name: str) -> str:
    """Display name of a backbone key (``lightgcn`` -> ``LightGCN``)."""
    return SPECS[name].label if name in SPECS else name


def make_backbone(name: str, n_users: int, n_items: int, params: BackboneParams,
                  train_matrix: sp.spmatrix) -> Backbone:
    """Build backbone ``name`` for a U x I dataset; graph models use ``train_matrix``."""
    if name not in SPECS:
        raise ValueError(f"unknown backbone {name!r}; choose one of {', '.join(BACKBONES)}")
    return SPECS[name].build(n_users, n_items, params, train_matrix)
