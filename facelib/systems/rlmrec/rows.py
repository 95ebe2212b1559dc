"""RLMRec's rows of the results table: RLMRec-Con and RLMRec-Gen, each trained from
scratch with the base model's backbone and schedule, and tested against that base model.
A variant the run left out (``rlmrec.variants``) is ``null`` in the metrics JSON and its
row is left out."""

from __future__ import annotations

from facelib.systems.rows import System

METRICS = "reports/metrics/systems/rlmrec/{backbone}-{seed}.json"
PER_USER = "data/systems/rlmrec/{dataset}/{backbone}-{seed}/per_user.npz"

ROWS = (
    System("rlmrec_con", "RLMRec-Con", "RLMRec-Con", METRICS, "con.test", stage="regularize",
           required=False, per_user=(PER_USER, "rlmrec_con"), compare=("base",)),
    System("rlmrec_gen", "RLMRec-Gen", "RLMRec-Gen", METRICS, "gen.test", stage="regularize",
           required=False, per_user=(PER_USER, "rlmrec_gen"), compare=("base",)),
)
