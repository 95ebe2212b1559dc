"""The README's results section is generated: it must equal what ``python -m
facelib.report`` writes from the committed ``reports/results/results.md`` (and the related
table's ``reports/related/results.md``), whose metrics tables must in turn equal the tables
recomputed from the committed metrics JSON."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from facelib.report import current_block, readme_block
from facelib.report.readme import PLACEHOLDER, RELATED_MD, RESULTS_MD
from facelib.results import summary_from_files

ROOT = Path(__file__).resolve().parents[1]
FACE_METRICS = ROOT / "reports" / "metrics" / "systems" / "face"


@pytest.fixture()
def committed_metrics():
    if not any(FACE_METRICS.glob("*.json")):
        pytest.skip("committed metrics files absent (reports/metrics/systems/face/*.json); "
                    "`make repro` writes them")


def test_readme_block_equals_the_generated_one(committed_metrics):
    block = current_block((ROOT / "README.md").read_text(encoding="utf-8"))
    assert block == readme_block(ROOT), (
        "README.md results section is stale: run `python -m facelib.report` "
        "(or `dvc repro report`) and commit README.md")


@pytest.mark.parametrize("md, recorded_json", [
    (RESULTS_MD, Path("reports/metrics/results.json")),
    (RELATED_MD, Path("reports/related/results.json")),
], ids=["study", "related"])
def test_results_md_matches_the_committed_metrics(committed_metrics, md, recorded_json):
    results_md = ROOT / md
    if not results_md.is_file():  # the results stage has not run yet: say so in README
        if md == RESULTS_MD:
            assert current_block((ROOT / "README.md").read_text(encoding="utf-8")) == PLACEHOLDER
        else:
            assert "make related" not in current_block(
                (ROOT / "README.md").read_text(encoding="utf-8"))
        return
    recorded = json.loads((ROOT / recorded_json).read_text())
    table = summary_from_files(ROOT, recorded["params"])
    text = results_md.read_text(encoding="utf-8")
    found = re.search(r"^\| Backbone \| System \|.*?(?=\n\n)", text, re.S | re.M)
    assert found is not None, f"{md} has no metrics table"
    assert found.group(0) == table, (
        f"{md} disagrees with reports/metrics/: run `make repro` (study) or `make related`")
