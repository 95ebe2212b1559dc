"""Compute profiles (profiles/<name>.yaml): the merged params are written and validated."""

from __future__ import annotations

import pytest
import yaml

from facelib.config import ParamsError, read_params_file
from facelib.profiles import apply, merged


def test_ml1m_profile_applies_its_keys_and_validates(tmp_path):
    out = apply("ml-1m", tmp_path / "params.yaml")
    written = yaml.safe_load(out.read_text())
    assert written["data"]["dataset"] == "ml-1m"
    assert written["study"]["seeds"] == [0]
    assert written["face"] == read_params_file()["face"]  # untouched sections stay


def test_unknown_profile_is_a_one_line_error():
    with pytest.raises(ParamsError, match="no profile 'nope'"):
        merged("nope")


def test_collect_takes_only_what_the_run_wrote(tmp_path, monkeypatch):
    import subprocess

    from facelib.profiles import collect

    tree = tmp_path / "tree"
    (tree / "reports/metrics/cf").mkdir(parents=True)
    (tree / "reports/metrics/cf/mf-0.json").write_text('{"dataset": "ml-100k"}')
    (tree / "reports/metrics/cf/lightgcn-0.json").write_text('{"dataset": "ml-100k"}')
    git = ["git", "-C", str(tree), "-c", "user.name=t", "-c", "user.email=t@t"]
    subprocess.run([*git, "init", "-q"], check=True)
    subprocess.run([*git, "add", "."], check=True)
    subprocess.run([*git, "commit", "-qm", "study"], check=True)
    (tree / "reports/metrics/cf/lightgcn-0.json").write_text('{"dataset": "ml-1m"}')
    (tree / "reports/metrics/text.json").write_text('{"dataset": "ml-1m"}')
    monkeypatch.setenv("FACELIB_ROOT", str(tmp_path / "repo"))
    out = collect("ml-1m", tree)
    got = sorted(str(p.relative_to(out)) for p in out.rglob("*") if p.is_file())
    assert got == ["metrics/cf/lightgcn-0.json", "metrics/text.json"]
