"""DaRec's weights chosen on validation, since the paper's are not known.

    python -m facelib.systems.darec.grid            # the related pipeline's darec_grid stage

Every (α, β) of ``darec.grid_alpha`` x ``darec.grid_beta`` trains DaRec from scratch (as the
darec stage does, :mod:`facelib.systems.joint`) on seed ``darec.grid_seed`` of each
backbone of ``study.regularized``; the point with the highest mean best-validation
Recall@20 over the backbones is selected. **Only validation metrics are read**: the test
split is not looked at. Nothing but the summary is written:
``reports/related/darec_grid.json`` (every point's validation Recall@20, best epoch and how
it stopped; the selection) and ``reports/related/darec_grid.md``. ``params.yaml`` then holds
the selected values as ``darec.alpha`` / ``darec.beta`` (a test checks they agree).
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from facelib import paths
from facelib.config import ParamsError, read_params_file
from facelib.data import RecDataset, load_dataset
from facelib.device import resolve_device
from facelib.io import write_json, write_text
from facelib.systems import joint
from facelib.systems.darec.params import DaRecParams
from facelib.systems.darec.stage import SYSTEM, factories
from facelib.train.params import TrainCFParams
from facelib.train.stage import state_path

OUTPUTS = {"json": Path("reports/related/darec_grid.json"),
           "md": Path("reports/related/darec_grid.md")}
KEY = "recall@20"  # the selection's validation metric


def grid_point(p: DaRecParams, backbone: str, alpha: float, beta: float, ds: RecDataset,
               profiles: tuple[torch.Tensor, torch.Tensor], cfp: TrainCFParams,
               device: torch.device, progress: bool = False) -> dict[str, Any]:
    """Train DaRec with (``alpha``, ``beta``) on ``backbone``-``p.grid_seed`` (its base
    run's parameters ``cfp``); its best-validation metric, best epoch, epochs and how it
    stopped (nothing written)."""
    q = dataclasses.replace(p, backbone=backbone, seed=p.grid_seed, alpha=alpha, beta=beta,
                            resume=False)
    state = state_path(True, f"{joint.PIPELINE}/{SYSTEM}-grid", q.dataset,
                       f"{backbone}-{q.seed}-{alpha:g}-{beta:g}")
    _, _, res = joint.train_variant("full", factories(q)["full"], q, cfp, ds, profiles,
                                    state, device,
                                    "darec.grid_alpha / darec.grid_beta", progress)
    state.unlink(missing_ok=True)
    return {"backbone": backbone, "alpha": alpha, "beta": beta,
            f"valid_{KEY}": float(res.best_valid[KEY]), "best_epoch": res.last.best_epoch,
            "epochs_run": res.last.epochs_run, "stopped_by": res.stopped_by,
            "seconds": round(res.last.seconds, 2)}


def select(points: list[dict[str, Any]]) -> dict[str, Any]:
    """The (α, β) with the highest mean validation metric over the backbones (ties: the
    first in grid order)."""
    by_pair: dict[tuple[float, float], list[float]] = {}
    for pt in points:
        by_pair.setdefault((pt["alpha"], pt["beta"]), []).append(pt[f"valid_{KEY}"])
    (alpha, beta), values = max(by_pair.items(), key=lambda kv: float(np.mean(kv[1])))
    return {"alpha": alpha, "beta": beta, f"mean_valid_{KEY}": float(np.mean(values))}


def grid_markdown(points: list[dict[str, Any]], chosen: dict[str, Any]) -> str:
    """The grid as a Markdown table (validation Recall@20 per backbone), and the choice."""
    backbones = list(dict.fromkeys(pt["backbone"] for pt in points))
    cell = {(pt["alpha"], pt["beta"], pt["backbone"]): pt for pt in points}
    pairs = list(dict.fromkeys((pt["alpha"], pt["beta"]) for pt in points))
    lines = ["| α | β | " + " | ".join(f"{b} valid {KEY}" for b in backbones) + " | mean |",
             "|---|---|" + "---|" * (len(backbones) + 1)]
    for a, b in pairs:
        vals = [cell[(a, b, bb)][f"valid_{KEY}"] for bb in backbones]
        lines.append(f"| {a:g} | {b:g} | " + " | ".join(f"{v:.4f}" for v in vals)
                     + f" | {np.mean(vals):.4f} |")
    lines.append("")
    lines.append(f"Selected on validation: α = {chosen['alpha']:g}, β = {chosen['beta']:g} "
                 f"(mean validation {KEY} {chosen[f'mean_valid_{KEY}']:.4f}); the test split "
                 f"was not read.")
    return "\n".join(lines) + "\n"


def run_grid(p: DaRecParams, backbones: list[str], progress: bool = False) -> dict[str, Any]:
    """Every grid point on every backbone, the selection, both outputs written."""
    t0 = time.perf_counter()
    if p.num_threads > 0:
        torch.set_num_threads(p.num_threads)
    device = resolve_device(p.device, "darec grid")
    todo = [(b, a, bb) for a in p.grid_alpha for bb in p.grid_beta for b in backbones]
    ds = load_dataset(paths.processed_dir(p.dataset))  # read once for every point
    user_prf, item_prf, _ = joint.profile_tensors(p.dataset, ds)
    bases = {b: joint.load_base(b, p.grid_seed, joint.joint_paths(
        SYSTEM, p.dataset, b, p.grid_seed, (), publish=True), ds)[0] for b in backbones}
    points = [grid_point(p, b, a, bb, ds, (user_prf, item_prf), bases[b], device)
              for b, a, bb in tqdm(todo, desc="darec grid", disable=not progress)]
    chosen = select(points)
    out = {"dataset": p.dataset, "seed": p.grid_seed, "backbones": backbones,
           "selection": f"highest mean best-validation {KEY} over the backbones",
           "points": points, "selected": chosen,
           "stopped_by": ("cap" if any(pt["stopped_by"] == "cap" for pt in points)
                          else "early_stopping"),
           "switches": p.switches(), "seconds": round(time.perf_counter() - t0, 1)}
    root = paths.repo_root()
    write_json(out, root / OUTPUTS["json"])
    write_text(grid_markdown(points, chosen), root / OUTPUTS["md"])
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m facelib.systems.darec.grid",
                                     description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--progress", action="store_true", help="a progress bar")
    args = parser.parse_args(argv)
    from facelib.pipeline import stage_params

    params = read_params_file()
    p = stage_params("darec", params=params)
    backbones = list((params.get("study") or {}).get("regularized") or [])
    if not backbones:  # StudyParams holds the default; params.yaml always writes it out
        raise ParamsError("params [study.regularized] missing: the DaRec grid runs on those "
                          "backbones; name them in params.yaml (python -m facelib.validate)")
    out = run_grid(p, backbones, args.progress)
    s = out["selected"]
    print(f"darec grid: {len(out['points'])} runs; selected alpha {s['alpha']:g}, beta "
          f"{s['beta']:g} (mean valid {KEY} {s[f'mean_valid_{KEY}']:.4f})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
