"""``params.yaml`` section ``study``: what the study runs, written once.

The DVC matrices read it (``train_cf``: ``backbones`` x ``seeds``; ``regularize``:
``systems`` x ``regularized`` x ``seeds``), and the pipeline fills the ``backbones`` and
``seeds`` of the results and interpret stages from it, so a profile that runs fewer seeds
or backbones changes one section.
"""

from __future__ import annotations

from dataclasses import dataclass

from facelib.config import ParamsError, param
from facelib.models.registry import BACKBONES
from facelib.systems import systems


@dataclass(frozen=True)
class StudyParams:
    """``params.yaml`` section ``study``."""

    backbones: list[str] = param(list(BACKBONES), choices=BACKBONES,
                                 help="CF backbones trained by train_cf")
    systems: list[str] = param(list(systems()), choices=systems(),
                               help="regulariser systems run on the pretrained backbones")
    regularized: list[str] = param(["lightgcn", "mf"], choices=BACKBONES,
                                   help="backbones the systems run on (and the tables show)")
    seeds: list[int] = param([0, 1, 2], ge=0, help="seeds of every seeded run")

    def __post_init__(self) -> None:
        for key in ("backbones", "systems", "regularized", "seeds"):
            values = list(getattr(self, key))
            if not values or len(set(values)) != len(values):
                raise ParamsError(f"params [study.{key}]: {values} must name at least one "
                                  f"value, each once; fix it in params.yaml")
        missing = sorted(set(self.regularized) - set(self.backbones))
        if missing:
            raise ParamsError(f"params [study.regularized]: {', '.join(missing)} not in "
                              f"study.backbones (train_cf must pretrain them); add them there")
