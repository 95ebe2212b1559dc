"""The budget curve's stopping-rule replay: early stopping on a validation key, counted in
whole passes, and the budget parameters."""

from __future__ import annotations

import pytest

from facelib.config import ParamsError, build
from facelib.systems.face.budget import BudgetParams, rule_stop, stop_epochs


def rows(values: list[float], key: str = "valid_recall@20") -> list[dict]:
    return [{"phase_epoch": i + 1, key: v} for i, v in enumerate(values)]


def test_stop_epochs_counts_evaluations_without_gain():
    history = rows([0.1, 0.3, 0.2, 0.25, 0.3, 0.1])
    assert stop_epochs(history, "valid_recall@20", 3) == {"stop": 5, "selected": 2}
    assert stop_epochs(history, "valid_recall@20", 5) == {"stop": None, "selected": 2}


def test_a_leading_minus_minimises():
    history = rows([5.0, 4.0, 4.5, 4.2], "valid_align_loss")
    assert stop_epochs(history, "-valid_align_loss", 2) == {"stop": 4, "selected": 2}


def test_rule_stop_reads_whole_passes_only():
    """Quarter-pass rows: a dip inside a pass does not count against patience; the stop and
    the selection are given in passes."""
    quarters = [1, 2, 3, 4,   # pass 1: 4
                1, 1, 1, 5,   # pass 2: 5 (a gain; the quarter-pass dips are not read)
                9, 9, 9, 4,   # pass 3: 4 (no gain)
                9, 9, 9, 3]   # pass 4: 3 (no gain)
    history = rows([float(v) for v in quarters])
    assert rule_stop(history, "valid_recall@20", 2, 0.25) == {"stop": 4.0, "selected": 2.0}
    assert stop_epochs(history, "valid_recall@20", 2)["stop"] == 6  # per quarter: earlier
    assert rule_stop(history, "valid_recall@20", 2, 1.0)["stop"] == 6.0


@pytest.mark.parametrize("passes", [[], [0.0], [-1.0, 2.0]])
def test_bad_passes_are_one_line_errors(passes):
    with pytest.raises(ParamsError) as err:
        build(BudgetParams, {"passes": passes}, "budget")
    assert "\n" not in str(err.value)


def test_the_unit_is_the_smallest_budget_at_most_one_pass():
    assert build(BudgetParams, {"passes": [0.0, 0.25, 4.0]}, "budget").unit == 0.25
    assert build(BudgetParams, {"passes": [2.0, 8.0]}, "budget").unit == 1.0


def test_the_readme_states_the_committed_curve():
    """The README's sentence on the curve is the one written from the committed JSON."""
    import json
    from pathlib import Path

    from facelib.systems.face.budget import budget_sentence

    root = Path(__file__).resolve().parents[1]
    path = root / "reports" / "budget" / "budget.json"
    if not path.is_file():
        pytest.skip("no committed budget curve (make budget writes reports/budget/budget.json)")
    sentence = budget_sentence(json.loads(path.read_text()))
    assert sentence in (root / "README.md").read_text(encoding="utf-8"), (
        f"README.md does not state the committed budget curve; put this sentence in its "
        f"budget section: {sentence}")
