"""RLMRec's rows of the related table (``related/dvc.yaml``): RLMRec-Con and RLMRec-Gen,
each trained from scratch with the base model's backbone and schedule, and tested against
that base model and against FACE. A variant the run left out is ``null`` in the metrics
JSON and its row is left out."""

from __future__ import annotations

from facelib.systems.rows import System

METRICS = "reports/metrics/related/rlmrec/{backbone}-{seed}.json"
PER_USER = "data/related/rlmrec/{dataset}/{backbone}-{seed}/per_user.npz"

ROWS = (
    System("rlmrec_con", "RLMRec-Con", "RLMRec-Con", METRICS, "con.test",
           stage="related/dvc.yaml:related", required=False,
           per_user=(PER_USER, "rlmrec_con"), compare=("base", "face")),
    System("rlmrec_gen", "RLMRec-Gen", "RLMRec-Gen", METRICS, "gen.test",
           stage="related/dvc.yaml:related", required=False,
           per_user=(PER_USER, "rlmrec_gen"), compare=("base", "face")),
)
