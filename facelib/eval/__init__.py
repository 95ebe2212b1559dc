"""Evaluation: full ranking of all items for every user (:mod:`.ranking`) and the top-K
metrics of ranked lists (:mod:`.metrics`), shared by score-based and generative models."""

from facelib.eval.metrics import KS, METRICS, PerUserMetrics, topk_metrics
from facelib.eval.ranking import Evaluator, Scorer, evaluate

__all__ = ["KS", "METRICS", "Evaluator", "PerUserMetrics", "Scorer", "evaluate",
           "topk_metrics"]
