"""Run one pipeline stage: validate its ``params.yaml`` section, then execute its notebook.

    python -m facelib.pipeline data
    python -m facelib.pipeline train_cf --set backbone=lightgcn --set seed=1

Each stage has one numbered notebook, one params section and one name. Parameters are
validated *before* the notebook starts (a bad value stops with a one-line error). The
executed notebook goes to ``reports/notebooks/`` only when it ran to the end; a failed run
is kept under ``build/failed/`` for debugging, never beside the good outputs.
"""

from __future__ import annotations

import argparse
import importlib
import os
import shutil
import signal
import sys
import tempfile
from dataclasses import fields
from pathlib import Path
from typing import Any

import yaml

from facelib import paths
from facelib.config import DEFAULT_DATASET, ParamsError, as_dict, build, read_params_file
from facelib.io import publish
from facelib.systems import NOTEBOOK, PARAMS_CLASS, systems

# stage -> (notebook, "module:ParamsClass"); every system of facelib.systems is a stage too
STAGES: dict[str, tuple[str, str]] = {
    "data": ("10_data.ipynb", "facelib.data.prepare:DataParams"),
    "text": ("20_text.ipynb", "facelib.text.stage:TextParams"),
    "train_cf": ("30_train_cf.ipynb", "facelib.train:TrainCFParams"),
    **{name: (NOTEBOOK.format(name=name), PARAMS_CLASS.format(name=name))
       for name in systems()},
    "results": ("60_results.ipynb", "facelib.results:ResultsParams"),
    "interpret": ("70_interpret.ipynb", "facelib.systems.face.interpret:InterpretParams"),
    "ablations": ("80_ablations.ipynb", "facelib.systems.face.ablations:AblationsParams"),
    "budget": ("81_budget.ipynb", "facelib.systems.face.budget:BudgetParams"),
    # the generative recommenders on leave-one-out (generative/dvc.yaml, `make generative`)
    "loo_baselines": ("90_loo_baselines.ipynb", "facelib.generative.baselines:BaselineParams"),
    "lcrec": ("91_lcrec.ipynb", "facelib.generative.lcrec:LCRecParams"),
    "semconv": ("92_semconv.ipynb", "facelib.generative.semconv:SemConvParams"),
    "generative": ("93_generative.ipynb", "facelib.generative.table:GenerativeParams"),
}


STUDY = "study"  # the section every matrix reads (facelib.study)


def params_class(stage: str) -> type:
    if stage not in STAGES:
        raise ParamsError(f"unknown stage {stage!r}; choose one of {', '.join(STAGES)}")
    module, cls = STAGES[stage][1].split(":")
    return getattr(importlib.import_module(module), cls)


def stage_params(stage: str, overrides: dict[str, Any] | None = None,
                 params: dict[str, Any] | None = None) -> Any:
    """The validated parameters of ``stage`` from params.yaml (or ``params``), with
    ``overrides`` applied.

    Stages after ``data`` whose parameters have a ``dataset`` field take it from
    ``data.dataset`` (one source of truth), unless overridden; the results and interpret
    stages take their backbones (``study.regularized``, and for the related table also
    ``study.extra_regularized``) and seeds from ``study``. An explicit override beats a
    per-backbone value of ``backbone_overrides`` for the same key.
    """
    params = read_params_file() if params is None else params
    cls = params_class(stage)
    section = dict(params.get(stage) or {})
    names = {f.name for f in fields(cls)}
    if stage != "data" and "dataset" in names:
        section.setdefault("dataset", (params.get("data") or {}).get("dataset", DEFAULT_DATASET))
    study = params.get(STUDY) or {}
    if stage in ("results", "interpret") and isinstance(study, dict):  # what was run
        backbones = list(study.get("regularized") or [])
        table = (overrides or {}).get("table", section.get("table"))
        if stage == "results" and table == "related":  # make related also runs these
            backbones += list(study.get("extra_regularized") or [])
        for name, value in (("backbones", backbones), ("seeds", study.get("seeds"))):
            if name in names and value:
                section.setdefault(name, value)
    overrides = dict(overrides or {})
    per_backbone = section.get("backbone_overrides")
    if isinstance(per_backbone, dict) and overrides:
        section["backbone_overrides"] = {
            b: ({k: v for k, v in vals.items() if k not in overrides}
                if isinstance(vals, dict) else vals) for b, vals in per_backbone.items()}
    section.update(overrides)
    return build(cls, section, stage)


def _parse_set(items: list[str]) -> dict[str, Any]:
    out = {}
    for item in items:
        if "=" not in item:
            raise ParamsError(f"--set {item!r}: expected key=value")
        key, value = item.split("=", 1)
        out[key.strip()] = yaml.safe_load(value)
    return out


def run_stage(stage: str, overrides: dict[str, Any] | None = None, suffix: str = "",
              out_dir: Path | None = None) -> Path:
    """Execute the notebook of ``stage`` with its params; return the executed notebook path
    (``out_dir``, default ``reports/notebooks/``, relative to the repository root)."""
    import papermill as pm

    p = stage_params(stage, overrides)
    notebook = STAGES[stage][0]
    root = paths.repo_root()
    src = root / "notebooks" / notebook
    folder = root / out_dir if out_dir is not None else paths.reports_dir() / "notebooks"
    out = folder / (Path(notebook).stem + suffix + ".ipynb")
    out.parent.mkdir(parents=True, exist_ok=True)
    parameters = {**as_dict(p), "progress": False, "publish": True}
    fd, tmp = tempfile.mkstemp(prefix=f".{out.stem}-", suffix=".ipynb", dir=out.parent)
    os.close(fd)
    env_backup = {k: os.environ.get(k) for k in KERNEL_ENV}
    os.environ.update(kernel_env(root))
    sigterm = signal.getsignal(signal.SIGTERM)
    signal.signal(signal.SIGTERM, _interrupt)  # `timeout`, `kill`: clean up as for Ctrl-C
    try:
        pm.execute_notebook(str(src), tmp, parameters=parameters, kernel_name="python3",
                            progress_bar=False, cwd=str(root / "notebooks"),
                            kernel_manager_class=ipc_kernel_manager())
        publish(tmp, out)
    except Exception as exc:
        failed = root / "build" / "failed" / out.name
        failed.parent.mkdir(parents=True, exist_ok=True)
        shutil.move(tmp, failed)
        msg = getattr(exc, "evalue", None) or str(exc).strip().splitlines()[-1]
        ename = getattr(exc, "ename", type(exc).__name__)
        raise SystemExit(f"stage {stage} failed: {ename}: {msg} (executed notebook kept at "
                         f"{failed.relative_to(root)})") from None
    finally:
        signal.signal(signal.SIGTERM, sigterm)
        if os.path.exists(tmp):  # interrupted (Ctrl-C, kill): leave nothing half-written
            os.remove(tmp)
        for key, value in env_backup.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
    return out


KERNEL_ENV = ("FACELIB_ROOT", "PYTHONPATH")  # what a stage's kernel inherits from run_stage


def kernel_env(root: Path) -> dict[str, str]:
    """The environment a stage's kernel needs: ``FACELIB_ROOT`` the repository, and the
    repository first on ``PYTHONPATH``, so that the kernel imports this checkout's facelib
    even when the environment's editable install points at another checkout."""
    rest = os.environ.get("PYTHONPATH", "")
    return {"FACELIB_ROOT": str(root),
            "PYTHONPATH": os.pathsep.join([str(root), *([rest] if rest else [])])}


def ipc_kernel_manager() -> type:
    """The kernel manager papermill starts the notebook's kernel with: local IPC sockets in
    Jupyter's runtime folder instead of TCP ports (no network exposure, and no "running over
    TCP without encryption" warning on every stage run)."""
    from uuid import uuid4

    from jupyter_client import AsyncKernelManager
    from jupyter_core.paths import jupyter_runtime_dir

    class IPCKernelManager(AsyncKernelManager):
        def __init__(self, **kwargs: Any) -> None:
            runtime = Path(jupyter_runtime_dir())
            runtime.mkdir(parents=True, exist_ok=True)
            # the socket paths' prefix; without it they land in the kernel's cwd (notebooks/)
            ip = str(runtime / f"facelib-{os.getpid()}-{uuid4().hex[:8]}")
            super().__init__(transport="ipc", ip=ip, **kwargs)

    return IPCKernelManager


def _interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m facelib.pipeline", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("stage", help=f"one of {', '.join(STAGES)}")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="override a parameter of the stage (repeatable)")
    parser.add_argument("--suffix", default="", help="suffix of the executed notebook's name")
    parser.add_argument("--out-dir", default=None, type=Path,
                        help="folder of the executed notebook (default reports/notebooks)")
    args = parser.parse_args(argv)
    try:
        out = run_stage(args.stage, _parse_set(args.set), args.suffix, args.out_dir)
    except ParamsError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:  # a read-only or full output folder, before the notebook runs
        where = exc.filename or "an output folder"
        print(f"error: stage {args.stage} cannot write {where} ({exc.strerror or exc}); make "
              f"it writable or free space, then run the stage again", file=sys.stderr)
        return 1
    except Exception as exc:  # one line for known data/model errors
        from facelib.data.errors import DataError

        if isinstance(exc, DataError):
            print(f"error: {exc}", file=sys.stderr)
            return 1
        raise
    print(f"stage {args.stage}: executed notebook at {out.relative_to(paths.repo_root())}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
