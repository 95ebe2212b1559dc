"""``params.yaml`` section ``darec`` (where a run reads and writes:
:mod:`facelib.systems.joint`).

DaRec's hyperparameters were not published with code; the defaults are one point of the
grid the specification names (α, β ∈ {1e-3, 1e-2, 1e-1}, K ∈ {4, 8, 16, 32}, shared and
specific size 32, temperature 0.2). ``params.yaml`` holds the α and β the darec_grid stage
selected on validation (:mod:`facelib.systems.darec.grid`). The backbone and the schedule are those of
the ``train_cf`` run of the same backbone and seed, as for RLMRec.
"""

from __future__ import annotations

from dataclasses import dataclass

from facelib.config import ParamsError, param
from facelib.systems.darec.model.structure import LOCAL
from facelib.systems.joint import JointParams


@dataclass(frozen=True)
class DaRecParams(JointParams):
    """``params.yaml`` section ``darec`` (reconstructed parts behind switches); dataset,
    backbone, seed and the runtime keys are :class:`JointParams`'."""

    shared_dim: int = param(32, ge=1, help="k, the size of the shared and specific parts")
    alpha: float = param(1e-2, ge=0.0, help="weight of the disentangling terms")
    beta: float = param(1e-1, ge=0.0, help="weight of the global + local alignment")
    clusters: int = param(8, ge=1, help="K preference centres per side (local alignment)")
    tau: float = param(0.2, gt=0.0, help="temperature of the assign_kl local alignment")
    ortho: bool = param(True, help="reconstructed: shared ⟂ specific on each side")
    uniformity: bool = param(True, help="reconstructed: uniformity of the shared parts")
    global_align: bool = param(True, help="reconstructed: batch similarity matrices agree")
    local: str = param("center_match", choices=LOCAL,
                       help="reconstructed: matched preference centres (center_match), "
                            "their soft assignments (assign_kl), or off")
    grid_alpha: list[float] = param([1e-3, 1e-2, 1e-1], ge=0.0,
                                    help="alpha values the darec_grid stage tries")
    grid_beta: list[float] = param([1e-3, 1e-2, 1e-1], ge=0.0,
                                   help="beta values the darec_grid stage tries")
    grid_seed: int = param(0, ge=0, help="the seed the darec_grid stage trains on")

    def __post_init__(self) -> None:
        for key in ("grid_alpha", "grid_beta"):
            values = list(getattr(self, key))
            if not values or len(set(values)) != len(values):
                raise ParamsError(f"params [darec.{key}]: {values} must name at least one "
                                  f"value, each once; fix it in params.yaml")

    def switches(self) -> dict[str, object]:
        """The reconstructed parts in force (recorded in every output)."""
        return {k: getattr(self, k) for k in ("ortho", "uniformity", "global_align", "local")}


Params = DaRecParams  # the system's params class (facelib.systems convention)
