"""The stage runner: params validated before work, failed runs leave no good-looking output."""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from pathlib import Path

import pytest

from facelib import pipeline
from facelib.config import param

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture()
def sandbox(tmp_path, monkeypatch):
    """A copy of the repository's params and notebooks under a temporary root."""
    shutil.copy(ROOT / "params.yaml", tmp_path / "params.yaml")
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    shutil.copytree(ROOT / "notebooks", tmp_path / "notebooks")
    monkeypatch.setenv("FACELIB_ROOT", str(tmp_path))
    return tmp_path


def test_bad_override_is_one_line_and_runs_nothing(sandbox, capsys):
    rc = pipeline.main(["data", "--set", "min_rating=9"])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and "\n" not in err and "data.min_rating" in err and "<= 5.0" in err
    assert not (sandbox / "reports").exists()


def test_unknown_stage(sandbox, capsys):
    assert pipeline.main(["nope"]) == 2
    assert "unknown stage 'nope'" in capsys.readouterr().err


@dataclass(frozen=True)
class _Probe:
    dataset: str = param("x")
    k: int = param(1)


def test_later_stages_take_the_dataset_from_the_data_section(sandbox, monkeypatch):
    (sandbox / "params.yaml").write_text("data:\n  dataset: ml-100k\n")
    monkeypatch.setattr(pipeline, "params_class", lambda stage: _Probe)
    assert pipeline.stage_params("probe").dataset == "ml-100k"
    assert pipeline.stage_params("probe", {"dataset": "synthetic"}).dataset == "synthetic"


def test_a_failing_notebook_is_kept_aside_not_published(sandbox):
    with pytest.raises(SystemExit) as exc:
        pipeline.run_stage("data", {"dataset": "rlmrec", "rlmrec_dir": str(sandbox / "none")})
    msg = str(exc.value)
    assert "stage data failed" in msg and "does not exist" in msg
    assert not (sandbox / "reports" / "notebooks" / "10_data.ipynb").exists()
    assert (sandbox / "build" / "failed" / "10_data.ipynb").exists()
    assert not list((sandbox / "reports" / "notebooks").glob(".*"))  # no temp file left


def test_a_successful_run_publishes_notebook_and_metrics(sandbox):
    out = pipeline.run_stage("data", {"dataset": "synthetic"})
    assert out == sandbox / "reports" / "notebooks" / "10_data.ipynb"
    again = pipeline.run_stage("data", {"dataset": "synthetic"}, suffix="-x",
                               out_dir=Path("reports/other"))
    assert again == sandbox / "reports" / "other" / "10_data-x.ipynb" and again.is_file()
    assert (sandbox / "reports" / "metrics" / "data.json").exists()
    assert (sandbox / "data" / "processed" / "synthetic" / "meta.json").exists()


def test_validate_checks_every_section_before_any_stage(sandbox, capsys):
    from facelib import validate

    assert validate.main([]) == 0
    assert "sections valid" in capsys.readouterr().out
    text = (sandbox / "params.yaml").read_text()
    (sandbox / "params.yaml").write_text(text.replace("train_cf:", "train-cf:"))
    assert validate.main([]) == 2
    err = capsys.readouterr().err
    assert "unknown section [train-cf]; did you mean 'train_cf'?" in err and err.count("\n") == 1
    (sandbox / "params.yaml").write_text(text)
    assert validate.main(["--set", "face.word_num=0"]) == 2  # as dvc exp run -S
    assert "[face.word_num]: 0 is out of range" in capsys.readouterr().err
    assert validate.main(["--set", "face.lr=1e-3"]) == 0  # YAML 1.1 string: a number
    assert validate.main(["--set", "study.regularized=[gcn]"]) == 2
    assert "[study.regularized]: unknown value 'gcn'" in capsys.readouterr().err


def test_an_explicit_override_beats_a_per_backbone_value(sandbox):
    (sandbox / "params.yaml").write_text(
        "train_cf:\n  max_epochs: 30\n  backbone_overrides:\n    lightgcn: {max_epochs: 12}\n")
    p = pipeline.stage_params("train_cf", {"backbone": "lightgcn"}).resolved()
    assert p.max_epochs == 12  # the per-backbone value applies ...
    p = pipeline.stage_params("train_cf", {"backbone": "lightgcn", "max_epochs": 2}).resolved()
    assert p.max_epochs == 2   # ... unless the key is set explicitly


def test_sigterm_leaves_no_half_written_notebook(sandbox):
    import os
    import signal
    import subprocess
    import sys
    import time

    env = {**os.environ, "FACELIB_ROOT": str(sandbox)}
    proc = subprocess.Popen([sys.executable, "-m", "facelib.pipeline", "data", "--set",
                             "dataset=synthetic"], env=env, cwd=sandbox)
    folder = sandbox / "reports" / "notebooks"
    for _ in range(600):  # wait until the temporary notebook exists, then kill
        if folder.is_dir() and list(folder.glob(".10_data-*")):
            break
        time.sleep(0.05)
    proc.send_signal(signal.SIGTERM)
    proc.wait(timeout=60)
    assert proc.returncode != 0
    assert not list(folder.glob(".*")) and not (folder / "10_data.ipynb").exists()


@pytest.mark.parametrize("stage", list(pipeline.STAGES))
def test_parameters_cells_parse_with_every_field_and_its_comment(stage, capsys):
    """papermill reads every line of the parameters cell (a comment with '>=' or ':' would
    make it drop the line and warn "Passed unknown parameter" for a value it applies), each
    parameter has a comment, and the names are the params class's fields plus the
    pipeline's progress/publish flags."""
    import papermill as pm
    from dataclasses import fields

    info = pm.inspect_notebook(str(ROOT / "notebooks" / pipeline.STAGES[stage][0]))
    assert "Unable to parse" not in capsys.readouterr().out + capsys.readouterr().err
    want = {f.name for f in fields(pipeline.params_class(stage))} | {"progress", "publish"}
    assert set(info) == want
    assert all(v["help"] for v in info.values()), [k for k, v in info.items() if not v["help"]]


def test_stage_kernels_import_this_checkouts_facelib(sandbox, monkeypatch):
    """The kernel inherits FACELIB_ROOT and PYTHONPATH with the repository first (an
    editable install of another checkout must not serve its facelib); both are restored
    after the run."""
    import papermill as pm

    seen = {}

    def fake_execute(src, out, **kw):
        seen.update(root=os.environ["FACELIB_ROOT"], path=os.environ["PYTHONPATH"])
        shutil.copy(src, out)

    monkeypatch.setenv("PYTHONPATH", "/elsewhere")
    monkeypatch.setattr(pm, "execute_notebook", fake_execute)
    pipeline.run_stage("data", {"dataset": "synthetic"})
    assert seen == {"root": str(sandbox), "path": os.pathsep.join([str(sandbox), "/elsewhere"])}
    assert os.environ["PYTHONPATH"] == "/elsewhere" and os.environ["FACELIB_ROOT"] == str(sandbox)


def test_stage_kernels_use_local_ipc_sockets(sandbox, capfd):
    pipeline.run_stage("data", {"dataset": "synthetic"})
    assert "without encryption" not in capfd.readouterr().err
    km = pipeline.ipc_kernel_manager()()
    assert km.transport == "ipc"
    from jupyter_core.paths import jupyter_runtime_dir
    assert Path(km.ip).parent == Path(jupyter_runtime_dir())  # not the notebooks folder


def test_an_executed_stage_notebook_has_no_stray_warnings(sandbox):
    """What a reader sees is clean: no stderr stream in any cell of an executed notebook
    (tqdm's "IProgress not found", a kernel's transport warning, a deprecation)."""
    import json

    out = pipeline.run_stage("data", {"dataset": "synthetic"})
    cells = json.loads(out.read_text())["cells"]
    stderr = [o.get("text") for c in cells for o in c.get("outputs", [])
              if o.get("name") == "stderr"]
    assert stderr == []


def test_an_unwritable_output_folder_is_one_line(sandbox, capsys, monkeypatch):
    import tempfile

    def denied(*args, **kwargs):
        raise PermissionError(13, "Permission denied", str(sandbox / "reports" / "notebooks"))

    monkeypatch.setattr(tempfile, "mkstemp", denied)
    assert pipeline.main(["data", "--set", "dataset=synthetic"]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "cannot write" in err and "Permission denied" in err
    assert "make it writable" in err


def test_a_failing_dvc_exp_run_keeps_the_outputs_it_had(sandbox):
    """`dvc exp run -S` with a bad value, as a user types it (no make exp): the stage fails
    with facelib's one-line error and the previous run's outputs stay whole."""
    import os
    import subprocess
    import sys

    import yaml

    spec = yaml.safe_load((ROOT / "dvc.yaml").read_text())
    (sandbox / "dvc.yaml").write_text(yaml.safe_dump({"stages": {"data": spec["stages"]["data"]}}))
    params = yaml.safe_load((sandbox / "params.yaml").read_text())
    params["data"]["dataset"] = "synthetic"
    (sandbox / "params.yaml").write_text(yaml.safe_dump(params))
    shutil.copytree(ROOT / "facelib", sandbox / "facelib",
                    ignore=shutil.ignore_patterns("__pycache__"))
    env = {**os.environ, "FACELIB_ROOT": str(sandbox), "PYTHONPATH": str(sandbox),
           "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
           "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t", "GIT_COMMITTER_NAME": "t",
           "GIT_COMMITTER_EMAIL": "t@t", "DVC_NO_ANALYTICS": "1"}

    def run(*cmd: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(cmd, cwd=sandbox, env=env, capture_output=True, text=True)

    dvc = (sys.executable, "-m", "dvc")
    for cmd in (("git", "init", "-q"), (*dvc, "init", "-q"), (*dvc, "repro", "-q"),
                ("git", "add", "-A"), ("git", "commit", "-qm", "study")):
        done = run(*cmd)
        assert done.returncode == 0, (cmd, done.stdout, done.stderr)
    metrics = sandbox / "reports" / "metrics" / "data.json"
    before = metrics.read_text()

    failed = run(*dvc, "exp", "run", "-S", "data.min_rating=9")
    assert failed.returncode != 0
    assert "data.min_rating" in failed.stderr + failed.stdout
    assert metrics.read_text() == before
    assert (sandbox / "reports" / "notebooks" / "10_data.ipynb").is_file()
    assert (sandbox / "data" / "processed" / "synthetic" / "meta.json").is_file()
