"""Which ``facelib`` files a pipeline stage runs, read from the import graph.

A DVC stage must depend on every ``facelib`` module its command imports, or editing such a
module serves stale outputs as up to date. This module computes that set statically: the
command's entry module (``python -m facelib.pipeline face`` -> :mod:`facelib.pipeline`, the
stage's params class and every ``facelib`` import of the stage's notebook), then the
transitive closure of ``import facelib...`` / ``from facelib... import ...`` statements
anywhere in those files (function-level imports included), each package's ``__init__`` on
the way. ``tests/test_dvc_deps.py`` fails when a stage's deps miss one of them.

    python -m facelib.deps face        # the deps a stage needs, folders collapsed
"""

from __future__ import annotations

import argparse
import ast
import json
import shlex
import sys
from collections.abc import Iterable
from pathlib import Path

from facelib import paths

PACKAGE = "facelib"


def module_file(name: str, root: Path) -> Path | None:
    """The file of module ``name`` (``a.b`` -> ``a/b.py`` or ``a/b/__init__.py``)."""
    base = root.joinpath(*name.split("."))
    for path in (base.with_suffix(".py"), base / "__init__.py"):
        if path.is_file():
            return path
    return None


def _type_checking_only(tree: ast.AST) -> set[int]:
    """ids of the import nodes inside ``if TYPE_CHECKING:`` blocks (never run)."""
    out: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            out.update(id(n) for stmt in node.body for n in ast.walk(stmt))
    return out


def dynamic_imports(name: str) -> set[str]:
    """Modules that ``name`` imports by name at run time (not visible to the parser):
    :mod:`facelib.results.systems` imports each system's ``rows`` module (the pipeline
    imports the params module of the stage it runs, see :func:`command_modules`)."""
    if name != "facelib.results.systems":
        return set()
    from facelib.systems import ROWS_MODULE, systems

    return {ROWS_MODULE.format(name=s) for s in systems()}


def _imports(source: str, root: Path) -> set[str]:
    """Names of the ``facelib`` modules a source imports (``from a import b`` counts ``a.b``
    when ``b`` is a module, else ``a``); imports under ``if TYPE_CHECKING:`` do not count."""
    out: set[str] = set()
    tree = ast.parse(source)
    skip = _type_checking_only(tree)
    for node in ast.walk(tree):
        if id(node) in skip:
            continue
        if isinstance(node, ast.Import):
            out.update(a.name for a in node.names if a.name.split(".")[0] == PACKAGE)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0 \
                and node.module.split(".")[0] == PACKAGE:
            out.add(node.module)
            out.update(f"{node.module}.{a.name}" for a in node.names
                       if module_file(f"{node.module}.{a.name}", root) is not None)
    return out


def closure(modules: Iterable[str], root: Path | None = None) -> set[Path]:
    """Files (relative to the repository root) of ``modules``, everything they import from
    ``facelib`` transitively, and the packages' ``__init__`` files on the way."""
    root = Path(root) if root is not None else paths.repo_root()
    todo, seen, files = list(modules), set(), set()
    while todo:
        name = todo.pop()
        parts = name.split(".")
        for i in range(1, len(parts) + 1):  # parent packages run their __init__ first
            sub = ".".join(parts[:i])
            if sub in seen:
                continue
            seen.add(sub)
            path = module_file(sub, root)
            if path is None:
                continue
            files.add(path.relative_to(root))
            todo.extend(_imports(path.read_text(), root) | dynamic_imports(sub))
    return files


def notebook_imports(path: Path, root: Path | None = None) -> set[str]:
    """The ``facelib`` modules the code cells of a notebook import."""
    root = Path(root) if root is not None else paths.repo_root()
    nb = json.loads(Path(path).read_text())
    code = "\n".join("".join(c["source"]) for c in nb["cells"] if c["cell_type"] == "code")
    lines = [ln for ln in code.splitlines() if not ln.lstrip().startswith(("%", "!"))]
    return _imports("\n".join(lines), root)


def command_modules(cmd: str, root: Path | None = None) -> set[str]:
    """The entry modules of a stage command ``python -m facelib... [args]`` (or several
    joined by ``&&``): for ``facelib.pipeline STAGE`` also the stage's params module and its
    notebook's imports."""
    from facelib.pipeline import STAGES

    root = Path(root) if root is not None else paths.repo_root()
    if "&&" in cmd:
        return set().union(*(command_modules(part, root) for part in cmd.split("&&")))
    words = shlex.split(cmd)
    if "-m" not in words:
        return set()
    module = words[words.index("-m") + 1]
    if module.split(".")[0] != PACKAGE:
        return set()
    out = {module}
    if module_file(f"{module}.__main__", root) is not None:
        out.add(f"{module}.__main__")
    if module == "facelib.pipeline":
        stage = words[words.index("-m") + 2]
        notebook, target = STAGES[stage]
        out.add(target.split(":")[0])
        out |= notebook_imports(root / "notebooks" / notebook, root)
    return out


def stage_files(cmd: str, root: Path | None = None) -> set[Path]:
    """Every ``facelib`` file a stage command runs (see the module docstring)."""
    return closure(command_modules(cmd, root), root)


def uncovered(files: Iterable[Path], deps: Iterable[str]) -> list[Path]:
    """The files not under any of ``deps`` (paths relative to the root, files or folders)."""
    dep_paths = [Path(d.rstrip("/")) for d in deps]
    return sorted(f for f in files if not any(f == d or d in f.parents for d in dep_paths))


def collapsed(files: set[Path], root: Path | None = None) -> list[str]:
    """``files`` as a short dep list: a folder whose every ``.py`` file is needed is listed
    as the folder."""
    root = Path(root) if root is not None else paths.repo_root()
    out = set(files)
    folders = sorted({p for f in files for p in f.parents if p != Path(".")},
                     key=lambda p: len(p.parts))
    for folder in folders:
        every = {f.relative_to(root) for f in (root / folder).rglob("*.py")}
        if every and every <= files and not any(o in folder.parents for o in out
                                                 if (root / o).is_dir()):
            out = {f for f in out if folder not in f.parents} | {folder}
    return sorted(str(p) for p in out)


def main(argv: list[str] | None = None) -> int:
    from facelib.pipeline import STAGES

    parser = argparse.ArgumentParser(prog="python -m facelib.deps", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("stage", help=f"one of {', '.join(STAGES)}, or a module run with "
                                      f"python -m (e.g. facelib.report)")
    args = parser.parse_args(argv)
    cmd = (f"python -m facelib.pipeline {args.stage}" if args.stage in STAGES
           else f"python -m {args.stage}")
    for dep in collapsed(stage_files(cmd)):
        print(f"      - {dep}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
