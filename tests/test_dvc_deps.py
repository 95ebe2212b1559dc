"""Every DVC stage depends on every facelib module its command runs (read from the import
graph by facelib.deps), so that editing a module never serves stale outputs as current."""

from __future__ import annotations

from pathlib import Path

import pytest

from facelib.deps import closure, command_modules, stage_files, uncovered

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def stages():
    """(name, cmd, deps relative to the root) of every stage of every dvc.yaml, with the
    matrix and foreach entries expanded by DVC itself."""
    from dvc.repo import Repo

    with Repo(str(ROOT)) as repo:
        out = []
        for stage in repo.index.stages:
            deps = [str(Path(d.fs_path).relative_to(ROOT)) for d in stage.deps]
            out.append((stage.addressing, stage.cmd, deps))
    return out


def test_every_stage_covers_its_imports(stages):
    names = {name.split("@")[0].split(":")[-1] for name, _, _ in stages}
    assert {"data", "text", "train_cf", "regularize", "results", "interpret", "report",
            "ablate", "summary"} <= names, names
    gaps = {name: [str(p) for p in uncovered(stage_files(cmd, ROOT), deps)]
            for name, cmd, deps in stages}
    gaps = {k: v for k, v in gaps.items() if v}
    assert not gaps, f"stages miss imported modules in their deps: {gaps}"


def test_a_missing_module_is_caught(stages):
    """The check bites: without the FACE model folder the regulariser stage is flagged."""
    name, cmd, deps = next(s for s in stages if s[0] == "regularize@face-lightgcn-0")
    dropped = [d for d in deps if d != "facelib/systems/face/model"]
    missing = uncovered(stage_files(cmd, ROOT), dropped)
    assert Path("facelib/systems/face/model/quantizer.py") in missing


def test_closure_follows_function_level_and_notebook_imports(tmp_path):
    pkg = tmp_path / "facelib"
    (pkg / "sub").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "a.py").write_text("def f():\n    from facelib.sub import b\n")
    (pkg / "sub" / "__init__.py").write_text("")
    (pkg / "sub" / "b.py").write_text("import facelib.c\n")
    (pkg / "c.py").write_text("from typing import TYPE_CHECKING\n"
                              "if TYPE_CHECKING:\n    from facelib import d\n")
    (pkg / "d.py").write_text("")
    files = {str(p) for p in closure(["facelib.a"], tmp_path)}
    assert files == {"facelib/__init__.py", "facelib/a.py", "facelib/sub/__init__.py",
                     "facelib/sub/b.py", "facelib/c.py"}  # d only under TYPE_CHECKING
    assert "facelib.systems.face.params" in command_modules(
        "python -m facelib.pipeline face --set seed=1", ROOT)
