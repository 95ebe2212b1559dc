"""Validate every section of ``params.yaml`` before DVC touches an output.

    python -m facelib.validate                          # what `make repro` runs first
    python -m facelib.validate --set face.word_num=8    # as `dvc exp run -S face.word_num=8`

An unknown or misspelt section name (with the closest known one) or any bad value stops with
a one-line error and exit status 2; nothing runs and nothing is written.
"""

from __future__ import annotations

import argparse
import difflib
import sys
from typing import Any

from facelib.config import ParamsError, build, read_params_file
from facelib.pipeline import STAGES, STUDY, _parse_set, stage_params


def study_params(params: dict[str, Any] | None = None) -> Any:
    """The ``study`` section (what the matrices run), validated."""
    from facelib.study import StudyParams

    params = read_params_file() if params is None else params
    return build(StudyParams, params.get(STUDY) or {}, STUDY)


def validate_params(params: dict[str, Any] | None = None) -> list[str]:
    """Validate every section of params.yaml (or ``params``) before any stage runs: an
    unknown or misspelt section name and any bad value raise a one-line
    :class:`ParamsError` (with the closest known name). Returns the sections checked."""


    params = read_params_file() if params is None else params
    known = [STUDY, *STAGES]
    for name in params:
        if name not in known:
            close = difflib.get_close_matches(str(name), known, n=1)
            hint = f"did you mean {close[0]!r}?" if close else f"known: {', '.join(known)}"
            raise ParamsError(f"params.yaml has an unknown section [{name}]; {hint} (fix the "
                              f"name or remove the section)")
        if not isinstance(params[name], dict):
            raise ParamsError(f"params [{name}]: expected a mapping of keys, got "
                              f"{type(params[name]).__name__}; fix it in params.yaml")
        if name == STUDY:
            study_params(params)
        else:
            stage_params(name, params=params)
    return list(params)


def _with_sets(params: dict[str, Any], sets: dict[str, Any]) -> dict[str, Any]:
    """``params`` with ``section.key=value`` overrides applied (a copy)."""
    out = {k: dict(v) if isinstance(v, dict) else v for k, v in params.items()}
    for dotted, value in sets.items():
        section, _, key = dotted.partition(".")
        if not key:
            raise ParamsError(f"--set {dotted}={value!r}: expected section.key=value here")
        if not isinstance(out.get(section), dict):
            out[section] = {}
        out[section][key] = value
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m facelib.validate", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--set", action="append", default=[], metavar="SECTION.KEY=VALUE",
                        help="a change as dvc exp run -S would make it (repeatable)")
    args = parser.parse_args(argv)
    try:
        checked = validate_params(_with_sets(read_params_file(), _parse_set(args.set)))
    except ParamsError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"params.yaml: {len(checked)} sections valid ({', '.join(checked)})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
