"""The ``darec`` stage: DaRec (reconstructed) on one backbone x seed, from scratch.

One run of :mod:`facelib.systems.joint` (variant ``full``: every switched-on part)::

    L = L_bpr (+ backbone terms) + α L_dis + β (L_G + L_L) (+ reg Σ‖f‖²)

Outputs as :mod:`facelib.systems.joint` describes, with system ``darec`` (per-user arrays
``darec_full.*``); the metrics JSON adds ``reconstructed``: the switches in force.
"""

from __future__ import annotations

from typing import Any

from facelib.systems import joint
from facelib.systems.darec.model.darec import DaRec
from facelib.systems.darec.params import DaRecParams

SYSTEM = "darec"
LABELS = {"full": "DaRec (reconstructed)"}
RECONSTRUCTED = ("reconstructed from the paper's abstract and reviews (no public code): "
                 "the losses, their weights and K are this project's reading, each behind "
                 "a switch of params.yaml section darec")


def factories(p: DaRecParams) -> dict[str, joint.RegularizerFactory]:
    """DaRec with the params' sizes, weights and switches."""
    return {"full": lambda users, items, dim, reg: DaRec(
        users, items, dim, p.shared_dim, p.alpha, p.beta, p.clusters, p.tau, p.ortho,
        p.uniformity, p.global_align, p.local, reg)}


def run_darec(p: DaRecParams, progress: bool = False, publish: bool = False
              ) -> dict[str, Any]:
    """Train DaRec on ``p.backbone``-``p.seed`` from scratch and publish its outputs;
    return the metrics (+ histories and paths)."""
    return joint.run_joint(SYSTEM, p, factories(p), fix="darec.alpha / darec.beta",
                           notes={"reconstructed": {"what": RECONSTRUCTED,
                                                    "switches": p.switches()}},
                           progress=progress, publish=publish)
