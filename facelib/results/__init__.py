"""The ``results`` stage: every system's test metrics in one table, mean ± std over seeds,
relative change vs the base model, paired significance over test users, figures, and
sentences written from the numbers.

Systems are data-driven (:data:`SYSTEMS`): a later system joins the table by adding one
:class:`System` entry (its metrics-file pattern and key path) and naming it in
``params.yaml``.
"""

from facelib.results.figures import bar_figure, per_user_figure
from facelib.results.smoke import prepare_smoke_inputs
from facelib.results.stage import (FIGURES, OUTPUTS, Results, ResultsParams, compute_results,
                                   headline_json, results_root, summary_from_files,
                                   write_results)
from facelib.results.stats import PairedTest, paired_test, runs_frame, summarize
from facelib.results.systems import (METRICS, SYSTEMS, ResultsError, Run, System,
                                     load_per_user, load_runs)
from facelib.results.tables import backbone_sentence, provenance_line, verdict

__all__ = [
    "FIGURES", "METRICS", "OUTPUTS", "SYSTEMS", "PairedTest", "Results", "ResultsError",
    "ResultsParams", "Run", "System", "backbone_sentence", "bar_figure", "compute_results",
    "headline_json", "load_per_user", "load_runs", "paired_test", "per_user_figure",
    "prepare_smoke_inputs", "provenance_line", "results_root", "runs_frame",
    "summarize", "summary_from_files", "verdict", "write_results",
]
