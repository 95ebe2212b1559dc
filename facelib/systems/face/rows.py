"""FACE's rows of the results tables: its control run, the map stage alone, and FACE
(map + align), read from the face stage's metrics JSON and per-user arrays; and FACE on top
of RLMRec-Con (``start: rlmrec_con``, the related pipeline), the paper's RLMRec row."""

from __future__ import annotations

from facelib.systems.rows import System

METRICS = "reports/metrics/systems/face/{backbone}-{seed}.json"
PER_USER = "data/systems/face/{dataset}/{backbone}-{seed}/per_user.npz"

ROWS = (
    System("control", "Control (no FACE loss)", "the control run", METRICS, "control.test",
           stage="regularize", required=False, per_user=(PER_USER, "control")),
    System("face_map", "FACE map-only", "FACE map-only", METRICS, "face.map.test",
           stage="regularize", per_user=(PER_USER, "map")),
    System("face", "FACE (map + align)", "FACE", METRICS, "face.test", stage="regularize",
           per_user=(PER_USER, "face"), compare=("base", "control", "face_map")),
    System("face_on_rlmrec_con", "RLMRec-Con + FACE", "RLMRec-Con + FACE",
           "reports/metrics/related/face_on_rlmrec_con/{backbone}-{seed}.json", "face.test",
           stage="related/dvc.yaml:face_on_rlmrec_con", required=False,
           per_user=("data/related/face_on_rlmrec_con/{dataset}/{backbone}-{seed}/per_user.npz",
                     "face"), compare=("rlmrec_con", "face")),
)
