"""CF backbones (BPR-MF, LightGCN, SimGCL, LightGCL), the most-popular floor, and the registry.

    make_backbone("lightgcn", n_users, n_items, params, train_matrix)

``params`` is a :class:`facelib.train.TrainCFParams` (or anything with its backbone fields:
dim, layers, keep_rate, eps, cl_weight, cl_temp, svd_q); the names are :data:`BACKBONES`.
"""

from facelib.models.base import Backbone, BatchOutput, Regularizer, bpr_loss
from facelib.models.lightgcl import LightGCL
from facelib.models.lightgcn import LightGCN
from facelib.models.mf import MF
from facelib.models.popularity import MostPopular
from facelib.models.registry import BACKBONES, backbone_label, make_backbone
from facelib.models.simgcl import SimGCL

__all__ = ["BACKBONES", "Backbone", "BatchOutput", "LightGCL", "LightGCN", "MF", "MostPopular",
           "Regularizer", "SimGCL", "backbone_label", "bpr_loss", "make_backbone"]
