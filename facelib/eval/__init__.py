"""Evaluation: full ranking of all items for every user and the top-K metrics."""

from facelib.eval.ranking import KS, Evaluator, PerUserMetrics, Scorer, evaluate

__all__ = ["KS", "Evaluator", "PerUserMetrics", "Scorer", "evaluate"]
