"""Typed, validated parameters: one dataclass per ``params.yaml`` section.

``params.yaml`` is the single source of truth; notebooks receive the same values through
papermill. Every value is checked for type and range before any work starts, and a bad
value raises :class:`ParamsError` with a one-line message naming the key and the fix.
Declare a field's constraints with :func:`param`.
"""

from __future__ import annotations

import dataclasses
import re
import typing
from pathlib import Path
from typing import Any, TypeVar

import yaml

from facelib.paths import repo_root

T = TypeVar("T")


class ParamsError(ValueError):
    """A parameter has the wrong type or range, or a section/key is unknown."""


# a file-name-safe name (datasets, tags, runs): what every ``name=True`` field must match
NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")
# a number as YAML 1.2 and people write it; PyYAML (YAML 1.1) reads ``1e-3`` as a string
_NUMBER = re.compile(r"[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?")


def param(
    default: Any,
    *,
    ge: float | None = None,
    gt: float | None = None,
    le: float | None = None,
    lt: float | None = None,
    choices: tuple[Any, ...] | None = None,
    name: bool = False,
    help: str = "",
) -> Any:
    """A dataclass field with validation metadata (bounds are inclusive for ge/le;
    ``name``: a non-empty value must be a file-name-safe name, see :data:`NAME`)."""
    meta = {"ge": ge, "gt": gt, "le": le, "lt": lt, "choices": choices, "name": name,
            "help": help}
    if isinstance(default, (list, dict)):
        return dataclasses.field(default_factory=lambda: type(default)(default), metadata=meta)
    return dataclasses.field(default=default, metadata=meta)


DEFAULT_DATASET = "ml-100k"
DEVICES = ("cpu", "cuda", "auto")


def dataset_param() -> Any:
    """The ``dataset`` field of every stage after ``data`` (the pipeline fills it in from
    ``data.dataset``, the one place it is set)."""
    return param(DEFAULT_DATASET, name=True, help="processed dataset (filled from data.dataset)")


def device_param(default: str = "auto") -> Any:
    """A ``device`` field: cpu, cuda, or auto (cuda when available)."""
    return param(default, choices=DEVICES, help="cpu | cuda | auto (cuda when available)")


def threads_param(default: int = 0) -> Any:
    """A ``num_threads`` field: torch CPU threads (0: torch's default)."""
    return param(default, ge=0, help="torch CPU threads (0: torch's default)")


def _type_ok(value: Any, tp: Any) -> bool:
    origin = typing.get_origin(tp)
    if tp is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if tp is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if tp is bool:
        return isinstance(value, bool)
    if tp is str:
        return isinstance(value, str)
    if origin in (list, tuple):
        (inner, *_) = typing.get_args(tp) or (Any,)
        return isinstance(value, (list, tuple)) and all(
            inner is Any or _type_ok(v, inner) for v in value
        )
    if origin in (typing.Union, getattr(__import__("types"), "UnionType", None)):
        return any(_type_ok(value, a) for a in typing.get_args(tp))
    if tp is type(None):
        return value is None
    return True


def _type_name(tp: Any) -> str:
    return getattr(tp, "__name__", None) or str(tp).replace("typing.", "")


def _check_value(section: str, f: dataclasses.Field, tp: Any, value: Any) -> Any:
    where = f"params [{section}.{f.name}]"
    if tp is float and isinstance(value, str) and _NUMBER.fullmatch(value.strip()):
        value = float(value)  # `1e-3`: a number that YAML 1.1 reads as a string
    if not _type_ok(value, tp):
        raise ParamsError(
            f"{where}: expected {_type_name(tp)}, got {value!r} ({type(value).__name__}); "
            f"fix the value in params.yaml"
        )
    m = f.metadata
    items = value if isinstance(value, (list, tuple)) else [value]
    for v in items:
        if m.get("name") and isinstance(v, str) and v and not NAME.fullmatch(v):
            raise ParamsError(f"{where}: {v!r} is not a file-name-safe name; use letters, "
                              f"digits, '.', '_' or '-' (starting with a letter or digit)")
        if m.get("choices") is not None and v not in m["choices"]:
            raise ParamsError(
                f"{where}: unknown value {v!r}; choose one of {', '.join(map(repr, m['choices']))}"
            )
        if isinstance(v, (int, float)) and not isinstance(v, bool):
            for key, ok, word in (
                ("ge", lambda a, b: a >= b, ">="),
                ("gt", lambda a, b: a > b, ">"),
                ("le", lambda a, b: a <= b, "<="),
                ("lt", lambda a, b: a < b, "<"),
            ):
                bound = m.get(key)
                if bound is not None and not ok(v, bound):
                    raise ParamsError(
                        f"{where}: {v!r} is out of range, must be {word} {bound}; "
                        f"fix the value in params.yaml"
                    )
    if tp is float and isinstance(value, int):
        value = float(value)
    if typing.get_origin(tp) is tuple and isinstance(value, list):
        value = tuple(value)
    return value


def build(cls: type[T], values: dict[str, Any] | None, section: str) -> T:
    """Validate ``values`` against dataclass ``cls`` and return an instance.

    Unknown keys and wrong types or ranges raise :class:`ParamsError`; missing keys take
    the dataclass default.
    """
    values = dict(values or {})
    if not isinstance(values, dict):
        raise ParamsError(f"params [{section}]: expected a mapping, got {type(values).__name__}")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - set(fields))
    if unknown:
        raise ParamsError(
            f"params [{section}]: unknown key(s) {', '.join(unknown)}; "
            f"known keys are {', '.join(fields)}"
        )
    kwargs = {
        name: _check_value(section, f, hints[name], values[name])
        for name, f in fields.items()
        if name in values
    }
    obj = cls(**kwargs)
    for name, f in fields.items():  # validate defaults too (cheap, catches bad defaults)
        if name not in values:
            _check_value(section, f, hints[name], getattr(obj, name))
    return obj


def read_params_file(path: Path | None = None) -> dict[str, Any]:
    """Read ``params.yaml`` (repository root by default) into a dict."""
    path = Path(path) if path is not None else repo_root() / "params.yaml"
    if not path.exists():
        raise ParamsError(f"{path} not found; run from the repository root or restore params.yaml")
    try:
        loaded = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        first = str(exc).splitlines()[0]
        raise ParamsError(f"{path} is not valid YAML ({first}); fix its syntax") from None
    if not isinstance(loaded, dict):
        raise ParamsError(f"{path} must be a mapping of sections")
    return loaded


def load_section(cls: type[T], section: str, path: Path | None = None) -> T:
    """Load and validate one section of ``params.yaml``."""
    params = read_params_file(path)
    if section not in params:
        raise ParamsError(f"params.yaml has no section [{section}]; add it (see README)")
    return build(cls, params[section], section)


def as_dict(obj: Any) -> dict[str, Any]:
    """A dataclass of parameters as a plain dict (tuples as lists), e.g. for papermill."""
    out = dataclasses.asdict(obj)
    return {k: list(v) if isinstance(v, tuple) else v for k, v in out.items()}
