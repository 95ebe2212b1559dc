"""``params.yaml`` section ``interpret`` and where the stage reads and writes.

Inputs (written by the ``face`` stage; ``publish=False`` reads a complete ``build/smoke/``
set when there is one, see :func:`input_root`)::

    data/systems/face/<dataset>/<backbone>-<seed>/descriptors.csv       FACE, after align
    data/systems/face/<dataset>/<backbone>-<seed>/descriptors-map.csv   map stage only
    checkpoints/systems/face/<dataset>/<backbone>-<seed>/align.pt       t-SNE map, item generation
    checkpoints/systems/face/<dataset>/<backbone>-<seed>/map.pt         item generation (map-only)

Outputs (``publish=True``; otherwise the same tree under ``build/smoke/``)::

    reports/metrics/interpret.json       every study x backbone x variant (mean, std, seeds)
    reports/figures/interpret_*.png      studies, codebook usage, t-SNE map
    reports/explorer.html                the self-contained descriptor explorer
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from facelib import paths
from facelib.config import ParamsError, dataset_param, device_param, param
from facelib.data.errors import DataError
from facelib.models.registry import BACKBONES
from facelib.systems.face.params import GROUP, run_files

FIGURES = ("studies", "usage", "tsne", "items")


class InterpretError(DataError):
    """An input of the interpret stage is missing or does not fit (one-line message)."""


@dataclass(frozen=True)
class InterpretParams:
    """``params.yaml`` section ``interpret`` (the dataset comes from ``data.dataset``)."""

    dataset: str = dataset_param()
    backbones: list[str] = param(["lightgcn", "mf"], choices=BACKBONES,
                                 help="backbones whose FACE descriptors are studied")
    seeds: list[int] = param([0, 1, 2], ge=0, help="seeds of the face runs")
    max_entities: int = param(300, ge=0, help="users and items sampled per type for the "
                                              "encoder-based studies (0: all)")
    retrieval_candidates: list[int] = param(
        [10, 20, 40, 60], ge=2, help="candidates N per item-retrieval question: the true "
                                     "item and N-1 others drawn at random")
    synonym_threshold: float = param(0.7, gt=0.0, le=1.0,
                                     help="word-sentence cosine counted as a near synonym")
    tsne_items: int = param(2000, ge=0, help="items on the t-SNE map (0: all)")
    case_studies: int = param(5, ge=1, help="users and items in the case-study tables")
    seed: int = param(0, ge=0, help="seed of the samples and of the random-words variant")
    batch_size: int = param(128, ge=1, le=4096, help="sentences per encoder batch")
    device: str = device_param("cpu")
    num_threads: int = param(0, ge=0, help="CPU threads of torch, NumPy and scikit-learn "
                                             "(0: their default)")

    def __post_init__(self) -> None:
        for key in ("backbones", "seeds", "retrieval_candidates"):
            values = list(getattr(self, key))
            if not values:
                raise ParamsError(f"params [interpret.{key}]: the list is empty; name at "
                                  f"least one")
            if len(set(values)) != len(values):
                raise ParamsError(f"params [interpret.{key}]: {values} repeats a value; "
                                  f"list each once")


@dataclass(frozen=True)
class InterpretPaths:
    """Where one run writes its outputs (the repository, or ``build/smoke``)."""

    root: Path
    metrics: Path
    figures: dict[str, Path]
    explorer: Path


def interpret_paths(publish: bool) -> InterpretPaths:
    """Outputs under the repository (``publish``) or ``build/smoke/``."""
    root = paths.repo_root() if publish else paths.repo_root() / "build" / "smoke"
    reports = root / "reports"
    return InterpretPaths(
        root=root, metrics=reports / "metrics" / "interpret.json",
        figures={name: reports / "figures" / f"interpret_{name}.png" for name in FIGURES},
        explorer=reports / "explorer.html")


def descriptor_path(root: Path, dataset: str, backbone: str, seed: int, variant: str) -> Path:
    """The face stage's descriptor CSV under ``root``; ``variant`` "face" (after align) or
    "map" (map stage only)."""
    files = run_files(root, GROUP, dataset, f"{backbone}-{seed}")
    return files["descriptors"]["map" if variant == "map" else "align"]


def checkpoint_path(root: Path, dataset: str, backbone: str, seed: int,
                    stage: str = "align") -> Path:
    """The face stage's checkpoint of one run under ``root`` (``stage`` map or align)."""
    return run_files(root, GROUP, dataset, f"{backbone}-{seed}")["checkpoints"][stage]


def required_inputs(p: InterpretParams, root: Path) -> list[tuple[Path, str, int]]:
    """Every descriptor file the run reads under ``root``, with its backbone and seed."""
    return [(descriptor_path(root, p.dataset, b, s, v), b, s)
            for b in p.backbones for s in p.seeds for v in ("face", "map")]


def input_root(p: InterpretParams, publish: bool) -> Path:
    """The root all descriptors are read from: the repository when publishing; otherwise
    ``build/smoke`` when it holds every file (a smoke run), else the repository. Never a
    mix, so all runs of one study come from one pipeline. Raises the "run the face stage
    first" error for the first missing file."""
    repo = paths.repo_root()
    candidates = [repo] if publish else [repo / "build" / "smoke", repo]
    for root in candidates:
        if all(path.is_file() for path, _, _ in required_inputs(p, root)):
            return root
    path, backbone, seed = next((x for x in required_inputs(p, repo) if not x[0].is_file()))
    raise missing_descriptors_error(path, backbone, seed)


def missing_descriptors_error(path: Path, backbone: str, seed: int) -> InterpretError:
    """The one-line error for a descriptor file that is not there."""
    return InterpretError(
        f"no descriptors for {backbone}-{seed} at {path}; run the face stage first: "
        f"dvc repro face (or python -m facelib.pipeline face --set backbone={backbone} "
        f"--set seed={seed})")
