"""The systems read beside each other: one folder per system.

A regulariser system's folder (``facelib/systems/<name>/``) holds ``model/`` (what its stage
trains), ``params.py`` (its ``params.yaml`` section as a dataclass, exported as ``Params``),
``stage.py`` (its run on one pretrained backbone x seed, through :func:`facelib.train.fit`),
``rows.py`` (``ROWS``: its rows of the results table) and its studies. A folder with a
``rows.py`` is a system: :func:`systems` finds it, the pipeline runs it as stage ``<name>``
with notebook ``notebooks/40_<name>.ipynb``, and the results table shows its rows. Adding a
system = its folder, its notebook, its ``params.yaml`` section and its name in the
``system`` list of the ``regularize`` stage in ``dvc.yaml``.
"""

from __future__ import annotations

import pkgutil
from functools import lru_cache
from pathlib import Path

ROWS_MODULE = "facelib.systems.{name}.rows"
PARAMS_CLASS = "facelib.systems.{name}.params:Params"
NOTEBOOK = "40_{name}.ipynb"


@lru_cache(maxsize=1)
def systems() -> tuple[str, ...]:
    """The names of the system folders (those with a ``rows.py``), sorted."""
    here = Path(__file__).parent
    return tuple(sorted(m.name for m in pkgutil.iter_modules([str(here)])
                        if m.ispkg and (here / m.name / "rows.py").is_file()))
