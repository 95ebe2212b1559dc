"""The report stage without a browser: offline HTML pages written atomically, an index
grouped by stage, and the README block replaced and nothing else."""

from __future__ import annotations

import pytest

from facelib.report import (END, START, ReadmeError, current_block, index_html, readme_block,
                            refresh_readme, render_all, replace_block, stage_of, write_index)
from facelib.report.readme import PLACEHOLDER
from report_helpers import tiny_notebook, tiny_reports

STAGES = {"10_data": "data", "30_train_cf": "train_cf", "60_results": "results"}


def test_pages_are_offline_with_embedded_images(tmp_path):
    tiny_notebook(tmp_path / "nb" / "10_data.ipynb")
    done = render_all(tmp_path / "nb", tmp_path / "html")
    assert not done.failed and [p.name for p in done.written] == ["10_data.html"]
    page = done.written[0].read_text()
    assert "data:image/png;base64," in page and "hello" in page
    assert "<script src=" not in page and "cdnjs" not in page and "mathjax" not in page.lower()


def test_a_failed_render_leaves_no_page_and_removes_stale_ones(tmp_path):
    tiny_notebook(tmp_path / "nb" / "10_data.ipynb")
    (tmp_path / "nb" / "20_text.ipynb").write_text("{ not a notebook")
    html = tmp_path / "html"
    html.mkdir()
    (html / "20_text.html").write_text("old page")
    (html / "09_gone.html").write_text("page of a notebook that no longer exists")
    done = render_all(tmp_path / "nb", html)
    assert list(done.failed) == ["20_text.ipynb"] and "\n" not in done.failed["20_text.ipynb"]
    assert sorted(p.name for p in html.iterdir()) == ["10_data.html"]  # no temp, no stale


def test_stage_of_notebook_names():
    assert stage_of("30_train_cf-mf-0", STAGES) == ("train_cf", "mf-0")
    assert stage_of("10_data", STAGES) == ("data", "")
    assert stage_of("99_misc", STAGES) == ("other", "99_misc")


def test_index_groups_pages_and_links_ablations_only_when_present(tmp_path):
    reports = tiny_reports(tmp_path / "reports")
    render_all(reports / "notebooks", reports / "html")
    page = index_html(reports, today="2025-01-03", stages=STAGES)
    assert page.index("<code>data</code>") < page.index("<code>train_cf</code>")
    assert '<a href="html/30_train_cf-mf-0.html">03 · Base CF models (mf-0)</a>' in page
    assert "<td>0.1979 ± 0.0010</td>" in page and "FACE does not beat the base model" in page
    assert page.count("data:image/png;base64,") == 1 and "Page written 2025-01-03" in page
    assert "ablations/index.html" not in page and "explorer.html" not in page
    assert "<script" not in page and "http" not in page.replace("http-equiv", "")
    (reports / "ablations").mkdir()
    (reports / "ablations" / "index.html").write_text("<html></html>")
    assert '<a href="ablations/index.html">Ablations</a>' in index_html(reports, stages=STAGES)
    assert write_index(reports).name == "index.html"


def test_readme_block_is_replaced_and_nothing_else(tmp_path):
    before = f"# Title\n\ntext\n\n## Results\n\n{START}\nold table\n{END}\n\n## Tests\nmore\n"
    after = replace_block(before, "new table")
    assert after == before.replace("old table", "new table")
    assert current_block(after) == "new table"
    with pytest.raises(ReadmeError, match="needs exactly one"):
        replace_block("# no markers\n", "x")


def test_refresh_readme_copies_results_md(tmp_path):
    (tmp_path / "README.md").write_text(f"# R\n\n## Results\n\n{START}\n{END}\n\n## Tests\n")
    assert readme_block(tmp_path) == PLACEHOLDER
    tiny_reports(tmp_path / "reports")
    assert refresh_readme(tmp_path) is True
    block = current_block((tmp_path / "README.md").read_text())
    assert block == readme_block(tmp_path)
    assert block.startswith("### Test metrics") and "# Results" not in block
    assert "<!--" not in block and "Produced 2025-01-01; dataset ml-1m." in block
    assert refresh_readme(tmp_path) is False          # idempotent
    assert "Interpretability" not in block
    (tmp_path / "reports" / "metrics").mkdir(parents=True, exist_ok=True)
    (tmp_path / "reports" / "metrics" / "interpret.json").write_text(
        '{"verdicts": ["In plain words, lightgcn: no better than random words."]}')
    assert refresh_readme(tmp_path) is True
    block = current_block((tmp_path / "README.md").read_text())
    assert "### Interpretability of the descriptors\n\n- In plain words, lightgcn" in block
    assert "and `reports/metrics/interpret.json` by" in block


def test_cli_builds_the_report(tmp_path, monkeypatch, capsys):
    from facelib.report.__main__ import main

    (tmp_path / "params.yaml").write_text("data: {}\n")
    (tmp_path / "pyproject.toml").write_text("")
    (tmp_path / "README.md").write_text(f"## Results\n\n{START}\n{END}\n")
    tiny_reports(tmp_path / "reports")
    monkeypatch.setenv("FACELIB_ROOT", str(tmp_path))
    assert main([]) == 0
    assert "rendered 2 notebook(s)" in capsys.readouterr().out
    assert (tmp_path / "reports" / "index.html").is_file()
    assert "Test metrics" in (tmp_path / "README.md").read_text()


def test_cli_renders_one_notebook(tmp_path, capsys):
    from facelib.report.__main__ import main

    tiny_notebook(tmp_path / "summary.ipynb")
    page = tmp_path / "ablations" / "index.html"
    assert main(["--render", str(tmp_path / "missing.ipynb"), str(page)]) == 2
    assert "no executed notebook" in capsys.readouterr().err and not page.exists()
    assert main(["--render", str(tmp_path / "summary.ipynb"), str(page)]) == 0
    assert "data:image/png;base64," in page.read_text()


def test_maths_is_rendered_to_mathml_offline():
    from facelib.report.render import math_to_mathml

    out = math_to_mathml("Project $h_c = xW_c + b_c$ then $$L = L_{base} + L_{vq}$$ at `$x$`, "
                         "price \\$5 and $5 to $6.")
    assert out.count("<math") == 2 and 'display="block"' in out and "`$x$`" in out
    assert "h_c" not in out and "$5 to $6" in out
