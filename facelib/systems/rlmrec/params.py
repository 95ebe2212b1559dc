"""``params.yaml`` section ``rlmrec`` (where a run reads and writes: :mod:`facelib.systems.joint`).

Regulariser defaults are RLMRec's own for Amazon-book (``modelconf/lightgcn_plus.yml``,
``lightgcn_gene.yml``): Con kd_weight 1e-2, τ 0.2; Gen mask_ratio 0.15, recon_weight 0.1,
τ 0.5. The backbone (d, layers, edge dropout, reg) and the schedule (lr, batch, epoch cap,
validation, patience) are those of the ``train_cf`` run of the same backbone and seed, read
from its checkpoint, so that the regulariser is the only difference from the base model.
"""

from __future__ import annotations

from dataclasses import dataclass

from facelib.config import ParamsError, param
from facelib.systems.joint import JointParams

VARIANTS = ("con", "gen")  # RLMRec-Con (contrastive), RLMRec-Gen (generative, masking)


@dataclass(frozen=True)
class RLMRecParams(JointParams):
    """``params.yaml`` section ``rlmrec`` (defaults: RLMRec's Amazon-book values); dataset,
    backbone, seed and the runtime keys are :class:`JointParams`'."""

    variants: list[str] = param(list(VARIANTS), choices=VARIANTS,
                                help="con (RLMRec-Con) and/or gen (RLMRec-Gen), each a run "
                                     "from scratch")
    kd_weight: float = param(1e-2, ge=0.0, help="Con: weight of the InfoNCE term")
    kd_tau: float = param(0.2, gt=0.0, help="Con: InfoNCE temperature")
    mask_ratio: float = param(0.15, gt=0.0, le=1.0, help="Gen: share of all nodes masked")
    recon_weight: float = param(0.1, ge=0.0, help="Gen: weight of the reconstruction term")
    recon_tau: float = param(0.5, gt=0.0, help="Gen: InfoNCE temperature")

    def __post_init__(self) -> None:
        if not self.variants or len(set(self.variants)) != len(self.variants):
            raise ParamsError(f"params [rlmrec.variants]: {list(self.variants)} must name "
                              f"con and/or gen, each once; fix it in params.yaml")


Params = RLMRecParams  # the system's params class (facelib.systems convention)
