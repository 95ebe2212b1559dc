"""FACE's rows of the results tables: its control run, the map stage alone, and FACE
(map + align), read from the face stage's metrics JSON and per-user arrays (the study's runs,
or the related pipeline's on ``study.extra_regularized``); and FACE on top of RLMRec-Con (``start: rlmrec_con``, the related pipeline), the paper's RLMRec row."""

from __future__ import annotations

from facelib.systems.rows import System

METRICS = "reports/metrics/systems/face/{backbone}-{seed}.json"
PER_USER = "data/systems/face/{dataset}/{backbone}-{seed}/per_user.npz"
# the same runs on study.extra_regularized, by the related pipeline (face --set related=true)
ELSEWHERE = ("reports/metrics/related/face/{backbone}-{seed}.json",
             "data/related/face/{dataset}/{backbone}-{seed}/per_user.npz")

ROWS = (
    System("control", "Control (no FACE loss)", "the control run", METRICS, "control.test",
           stage="regularize", required=False, per_user=(PER_USER, "control"),
           elsewhere=ELSEWHERE),
    System("face_map", "FACE map-only", "FACE map-only", METRICS, "face.map.test",
           stage="regularize", per_user=(PER_USER, "map"), elsewhere=ELSEWHERE),
    System("face", "FACE (map + align)", "FACE", METRICS, "face.test", stage="regularize",
           per_user=(PER_USER, "face"), compare=("base", "control", "face_map"),
           elsewhere=ELSEWHERE),
    System("face_on_rlmrec_con", "RLMRec-Con + FACE", "RLMRec-Con + FACE",
           "reports/metrics/related/face_on_rlmrec_con/{backbone}-{seed}.json", "face.test",
           stage="related/dvc.yaml:face_on_rlmrec_con", required=False,
           per_user=("data/related/face_on_rlmrec_con/{dataset}/{backbone}-{seed}/per_user.npz",
                     "face"), compare=("rlmrec_con", "face")),
)
