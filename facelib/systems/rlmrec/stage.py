"""The ``rlmrec`` stage: RLMRec-Con and RLMRec-Gen on one backbone x seed, from scratch.

Each variant is a run of :mod:`facelib.systems.joint` (the backbone trained *with* the
regulariser from scratch, mirroring the ``train_cf`` run of the same backbone and seed)::

    con   L = L_bpr (+ backbone terms) + kd_weight L_con (+ reg Σ‖σ↓‖²)
    gen   L = L_bpr (+ backbone terms) + recon_weight L_gen (+ reg Σ‖m, σ↑‖²)  (masked ego)

Outputs as :mod:`facelib.systems.joint` describes, with system ``rlmrec`` and variants
``con`` and ``gen`` (per-user arrays ``rlmrec_con.*``, ``rlmrec_gen.*``). RLMRec-Gen is
skipped on a backbone without propagation (MF: a masked node's embedding would be the mask
token alone); the metrics JSON says so under ``skipped``.
"""

from __future__ import annotations

from typing import Any

from facelib.systems import joint
from facelib.systems.rlmrec.model.contrastive import RLMRecCon
from facelib.systems.rlmrec.model.generative import GRAPH_FREE, RLMRecGen
from facelib.systems.rlmrec.params import VARIANTS, RLMRecParams

SYSTEM = "rlmrec"
LABELS = {"con": "RLMRec-Con", "gen": "RLMRec-Gen"}
GRAPH_FREE_SKIP = ("not run: {backbone} has no propagation, so a masked node's embedding "
                   "is the mask token alone and there is nothing to reconstruct from")


def factories(p: RLMRecParams) -> dict[str, joint.RegularizerFactory]:
    """RLMRec-Con and RLMRec-Gen with the params' weights and temperatures."""
    return {
        "con": lambda users, items, dim, reg: RLMRecCon(users, items, dim, p.kd_weight,
                                                        p.kd_tau, reg),
        "gen": lambda users, items, dim, reg: RLMRecGen(users, items, dim, p.mask_ratio,
                                                        p.recon_weight, p.recon_tau, reg),
    }


def run_rlmrec(p: RLMRecParams, progress: bool = False, publish: bool = False
               ) -> dict[str, Any]:
    """Train every variant of ``p.variants`` on ``p.backbone``-``p.seed`` from scratch and
    publish the outputs together; return the metrics (+ histories and paths)."""
    skipped = {v: "not listed in rlmrec.variants" for v in VARIANTS if v not in p.variants}
    if "gen" in p.variants and p.backbone in GRAPH_FREE:
        skipped["gen"] = GRAPH_FREE_SKIP.format(backbone=p.backbone)
    if len(skipped) == len(VARIANTS):
        raise joint.JointError(f"nothing to run: {p.backbone} has no propagation for "
                               f"RLMRec-Gen; add con to rlmrec.variants or choose a graph "
                               f"backbone")
    return joint.run_joint(SYSTEM, p, factories(p), skipped,
                           fix="rlmrec.kd_weight / rlmrec.recon_weight",
                           progress=progress, publish=publish)
