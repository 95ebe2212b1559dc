"""``params.yaml`` section ``study``: what the study runs, written once.

The DVC matrices read it (``train_cf``: ``backbones`` x ``seeds``; ``regularize``:
``systems`` x ``regularized`` x ``seeds``; ``related/dvc.yaml``'s ``related``: ``related`` x
``regularized`` x ``seeds``, and its ``regularize_extra``: ``systems`` x
``extra_regularized`` x ``seeds``), and the pipeline fills the ``backbones`` and ``seeds``
of the results and interpret stages from it (the related table's backbones are
``regularized`` then ``extra_regularized``), so a profile that runs fewer seeds or
backbones changes one section.
"""

from __future__ import annotations

from dataclasses import dataclass

from facelib.config import ParamsError, param
from facelib.models.registry import BACKBONES
from facelib.results.systems import is_related, system_rows

# systems whose rows the related pipeline writes (trained from scratch beside the study)
RELATED: tuple[str, ...] = tuple(name for name, rows in system_rows().items()
                                 if rows and all(is_related(r) for r in rows))
REGULARIZERS: tuple[str, ...] = tuple(name for name in system_rows() if name not in RELATED)


@dataclass(frozen=True)
class StudyParams:
    """``params.yaml`` section ``study``."""

    backbones: list[str] = param(list(BACKBONES), choices=BACKBONES,
                                 help="CF backbones trained by train_cf")
    systems: list[str] = param(list(REGULARIZERS), choices=REGULARIZERS,
                               help="regulariser systems run on the pretrained backbones")
    related: list[str] = param(list(RELATED), choices=RELATED,
                               help="systems trained from scratch beside them by "
                                    "related/dvc.yaml (make related)")
    regularized: list[str] = param(["lightgcn", "mf"], choices=BACKBONES,
                                   help="backbones the systems run on (and the tables show)")
    extra_regularized: list[str] = param(["lightgcl"], choices=BACKBONES,
                                         help="backbones the systems also run on in "
                                              "related/dvc.yaml (make related), kept out of "
                                              "make repro's time; the related table shows them")
    seeds: list[int] = param([0, 1, 2], ge=0, help="seeds of every seeded run")

    def __post_init__(self) -> None:
        for key in ("backbones", "systems", "related", "regularized", "extra_regularized",
                    "seeds"):
            values = list(getattr(self, key))
            if not values or len(set(values)) != len(values):
                raise ParamsError(f"params [study.{key}]: {values} must name at least one "
                                  f"value, each once; fix it in params.yaml")
        for key in ("regularized", "extra_regularized"):
            missing = sorted(set(getattr(self, key)) - set(self.backbones))
            if missing:
                raise ParamsError(f"params [study.{key}]: {', '.join(missing)} not in "
                                  f"study.backbones (train_cf must pretrain them); add them "
                                  f"there")
        both = sorted(set(self.regularized) & set(self.extra_regularized))
        if both:
            raise ParamsError(f"params [study.extra_regularized]: {', '.join(both)} already in "
                              f"study.regularized (make repro runs them); remove them from one")
