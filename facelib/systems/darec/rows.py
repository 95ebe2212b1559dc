"""DaRec's row of the related table (``related/dvc.yaml``), labelled as reconstructed:
trained from scratch with the base model's backbone and schedule, tested against that base
model and against FACE."""

from __future__ import annotations

from facelib.systems.rows import System

METRICS = "reports/metrics/related/darec/{backbone}-{seed}.json"
PER_USER = "data/related/darec/{dataset}/{backbone}-{seed}/per_user.npz"

ROWS = (
    System("darec", "DaRec (reconstructed)", "DaRec (reconstructed)", METRICS, "full.test",
           stage="related/dvc.yaml:related", required=False, per_user=(PER_USER, "darec_full"),
           compare=("base", "face")),
)
