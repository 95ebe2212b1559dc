"""Report pages in a real browser (headless Chromium via selenium): a good report has no
problem, and a broken page is caught (image, script error, link)."""

from __future__ import annotations

import os

import pytest

from facelib.report import render_all, write_index
from facelib.report.browser import INSTALL_HINT, browser_missing, check_pages, report_pages
from report_helpers import tiny_reports


@pytest.fixture(scope="module")
def chromium():
    """Skip without Chromium, except under CI (CI set), where its absence is a failure."""
    missing = browser_missing()
    if missing:
        message = f"{missing}: {INSTALL_HINT}"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)


def test_a_rendered_report_has_no_problem(chromium, tmp_path):
    reports = tiny_reports(tmp_path / "reports")
    assert not render_all(reports / "notebooks", reports / "html").failed
    write_index(reports)
    (reports / "explorer.html").write_text(
        "<!DOCTYPE html><html><body><input id='q'><table><tr><td>word</td></tr></table>"
        "<script>document.getElementById('q').addEventListener('input', () => 0);</script>"
        "</body></html>")
    pages = report_pages(reports)
    assert [p.name for p in pages] == ["index.html", "10_data.html", "30_train_cf-mf-0.html",
                                       "explorer.html"]
    shots = tmp_path / "shots"
    assert check_pages(pages, shots) == []
    assert sorted(p.name for p in shots.iterdir()) == [
        "html__10_data.png", "html__30_train_cf-mf-0.png", "reports__explorer.png",
        "reports__index.png"]
    assert all(p.stat().st_size > 1000 for p in shots.iterdir())


def test_broken_pages_are_reported(chromium, tmp_path):
    bad = tmp_path / "bad.html"
    bad.write_text(
        "<!DOCTYPE html><html><body><h1 id='top'>bad</h1>"
        "<img src='missing.png' alt='gone'>"
        "<a href='#top'>fine</a> <a href='#nowhere'>no anchor</a> "
        "<a href='nowhere.html'>no page</a> <a href='https://example.org'>external</a>"
        "<script>throw new Error('boom')</script></body></html>")
    problems = check_pages([bad, tmp_path / "absent.html"], tmp_path / "shots")
    text = "\n".join(problems)
    assert "bad.html: broken image missing.png" in text
    assert "boom" in text                                   # the uncaught error
    assert "broken link nowhere.html" in text and "broken anchor #nowhere" in text
    assert "#top" not in text and "example.org" not in text
    assert "absent.html: page does not exist" in text
    assert (tmp_path / "shots" / f"{tmp_path.name}__bad.png").is_file()
