"""Ablations and sensitivity of FACE: one table and one sentence per question.

The ``ablate`` stages of ``ablations/dvc.yaml`` run the face stage on one pretrained run
(``backbone``-``seed``) with one change each (``params.yaml: ablations.variants``) and write
``reports/metrics/ablations/<backbone>-<seed>-<tag>.json``. The unchanged configuration is
the main face run of that backbone and seed (``reports/metrics/systems/face/<backbone>-<seed>.json``);
the spread over seeds of FACE's change from its own base model (main runs) is the yardstick
for "within noise": every variant starts from the same pretrained checkpoint, so the spread
of the base models themselves would overstate the noise.

Questions answered (each a :class:`Question` with the variants it compares):

- number of descriptors C in {4, 8, 16, 32};
- alignment weight in {0.01, 0.1, 1};
- map only versus map + align (every main run, all seeds and backbones: paired by seed);
- each reference-quirk switch turned on, against the corrected default.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from facelib import paths
from facelib.config import ParamsError, dataset_param, param
from facelib.models.registry import BACKBONES
from facelib.data.errors import DataError
from facelib.systems.face.params import GROUP

METRICS = ("recall@20", "ndcg@20")


class AblationError(DataError):
    """Ablation metrics are missing (one-line message naming the command to run)."""


@dataclass(frozen=True)
class AblationsParams:
    """``params.yaml`` section ``ablations`` (the summary stage reads it)."""

    dataset: str = dataset_param()
    backbone: str = param("lightgcn", choices=BACKBONES)
    seed: int = param(0, ge=0)
    variants: dict = param({}, help="tag -> face overrides ('--set key=value ...')")

    def __post_init__(self) -> None:
        for tag, value in self.variants.items():
            if not isinstance(value, str) or not all(
                    re.fullmatch(r"--set|[A-Za-z_]+=\S+", tok) for tok in value.split()):
                raise ParamsError(f"params [ablations.variants.{tag}]: {value!r} is not a list "
                                  f"of '--set key=value' overrides")


@dataclass(frozen=True)
class Question:
    """One ablation question: its title, the variants compared (tag -> label), the
    parameter that varies, and which label is the default configuration."""

    title: str
    parameter: str
    variants: dict[str, str]
    default: str


def questions(default_c: int = 16, default_weight: float = 0.1) -> list[Question]:
    """The questions of the study; tag ``""`` is the main face run."""
    return [
        Question("number of descriptors C", "word_num",
                 {"c4": "4", "c8": "8", "": str(default_c), "c32": "32"}, str(default_c)),
        Question("alignment weight", "align_weight",
                 {"align_weight_0p01": "0.01", "": f"{default_weight:g}", "align_weight_1": "1"},
                 f"{default_weight:g}"),
        Question("reference-quirk switches", "switch",
                 {"": "none (corrected)", "ref_vq_weights": "reference_vq_weights",
                  "ref_prompt_order": "reference_prompt_order",
                  "encoder_dropout": "encoder_dropout", "pinv_words": "pinv_words",
                  "ref_init": "reference_init"}, "none (corrected)"),
    ]


def _load(path: Path) -> dict[str, Any]:
    if not path.is_file():
        shown = path.relative_to(paths.repo_root()) if path.is_relative_to(
            paths.repo_root()) else path
        raise AblationError(f"missing {shown}; run "
                            f"`make ablations` (dvc repro ablations/dvc.yaml)")
    return json.loads(path.read_text())


def variant_metrics(p: AblationsParams, tag: str, root: Path | None = None) -> dict[str, Any]:
    """Test metrics (FACE after align, after map, base) and cost of one variant."""
    root = root or paths.reports_dir()
    name = f"{p.backbone}-{p.seed}"
    m = _load(root / "metrics" / ("ablations" if tag else GROUP)
              / (f"{name}-{tag}.json" if tag else f"{name}.json"))
    return {"face": m["face"]["test"], "map": m["face"]["map"]["test"],
            "base": m["base"]["test"], "seconds": m["seconds"]["map"] + m["seconds"]["align"],
            "valid": m["face"]["valid"]["recall@20"]}


def question_table(p: AblationsParams, q: Question, root: Path | None = None) -> pd.DataFrame:
    """Rows: the variants of ``q`` (in order); columns: FACE and map-only test metrics,
    difference to the default (FACE), seconds of map + align."""
    rows = []
    for tag, label in q.variants.items():
        v = variant_metrics(p, tag, root)
        rows.append({q.parameter: label, **{f"FACE {k}": v["face"][k] for k in METRICS},
                     **{f"map-only {k}": v["map"][k] for k in METRICS},
                     "valid recall@20": v["valid"], "seconds": round(v["seconds"])})
    out = pd.DataFrame(rows).set_index(q.parameter)
    for k in METRICS:
        out[f"Δ {k} vs default"] = out[f"FACE {k}"] - out.loc[q.default, f"FACE {k}"]
    return out


def map_vs_align(root: Path | None = None) -> pd.DataFrame:
    """Every main face run: backbone, seed, test metrics after map and after map + align."""
    root = root or paths.reports_dir()
    rows = []
    for path in sorted((root / "metrics" / GROUP).glob("*.json")):
        m = json.loads(path.read_text())
        rows.append({"backbone": m["backbone"], "seed": m["seed"],
                     **{f"map-only {k}": m["face"]["map"]["test"][k] for k in METRICS},
                     **{f"map + align {k}": m["face"]["test"][k] for k in METRICS}})
    if not rows:
        raise AblationError(f"no reports/metrics/{GROUP}/*.json; run the face stage first "
                            f"(dvc repro regularize)")
    out = pd.DataFrame(rows)
    for k in METRICS:
        out[f"Δ {k}"] = out[f"map + align {k}"] - out[f"map-only {k}"]
    return out


def seed_spread(backbone: str, root: Path | None = None) -> dict[str, float]:
    """Sample standard deviation over the main runs' seeds of FACE's change from its base
    model, sd_s(m_FACE,s - m_base,s) per test metric: the noise a single-seed ablation (same
    pretrained checkpoint, one change) is read against; nan with fewer than two seeds."""
    root = root or paths.reports_dir()
    runs = [json.loads(p.read_text()) for p in (root / "metrics" / GROUP).glob(f"{backbone}-*.json")]
    return {k: float(np.std([r["face"]["test"][k] - r["base"]["test"][k] for r in runs],
                            ddof=1)) if len(runs) > 1 else float("nan") for k in METRICS}


def verdict(table: pd.DataFrame, q: Question, spread: dict[str, float],
            metric: str = "recall@20") -> str:
    """One sentence from the numbers: the range of FACE's test ``metric`` over the variants
    of ``q``, the best one, and whether the range exceeds twice the seed spread."""
    col = table[f"FACE {metric}"]
    lo, hi = float(col.min()), float(col.max())
    best, worst = col.idxmax(), col.idxmin()
    noise = spread.get(metric, float("nan"))
    width = hi - lo
    if np.isnan(noise):
        judged = "no seed spread is available to judge it"
    elif width <= 2 * noise:
        judged = (f"within twice the seed spread of FACE's effect in the main runs "
                  f"({2 * noise:.4f}): the choice makes no measurable difference at this "
                  f"budget")
    else:
        judged = (f"more than twice the seed spread of FACE's effect in the main runs "
                  f"({2 * noise:.4f}): {best} is best and {worst} worst")
    return (f"{q.title[0].upper()}{q.title[1:]}: test {metric} ranges from {lo:.4f} "
            f"({worst}) to {hi:.4f} ({best}), a spread of {width:.4f}, {judged}.")


def map_align_verdict(table: pd.DataFrame, metric: str = "recall@20") -> str:
    """One sentence: does the align stage change test ``metric`` over map only, per backbone
    (mean paired difference over seeds and how many seeds improve)?"""
    parts = []
    for backbone, g in table.groupby("backbone"):
        d = g[f"Δ {metric}"]
        parts.append(f"{backbone} {d.mean():+.4f} on average ({int((d > 0).sum())} of "
                     f"{len(d)} seeds improve)")
    return (f"Map + align versus map only, test {metric}: " + "; ".join(parts) + ".")


def plot_question(table: pd.DataFrame, q: Question, base: dict[str, float]) -> Any:
    """Bar chart of FACE's and map-only test Recall@20 / NDCG@20 per variant of ``q``, with
    the base model as a dashed line; returns the matplotlib figure."""
    import matplotlib.pyplot as plt
    import seaborn as sns

    fig, axes = plt.subplots(1, 2, figsize=(11, 3.4))
    for ax, k in zip(axes, METRICS, strict=True):
        long = table[[f"map-only {k}", f"FACE {k}"]].rename(
            columns={f"map-only {k}": "map only", f"FACE {k}": "map + align"})
        long = long.reset_index().melt(id_vars=q.parameter, var_name="stage", value_name=k)
        sns.barplot(data=long, x=q.parameter, y=k, hue="stage", ax=ax)
        ax.axhline(base[k], ls="--", c="k", lw=1, label="base")
        lo = min(long[k].min(), base[k])
        hi = max(long[k].max(), base[k])
        ax.set_ylim(lo - 0.5 * (hi - lo) - 1e-4, hi + 0.5 * (hi - lo) + 1e-4)
        ax.set_title(f"{q.title}: test {k}")
        ax.tick_params(axis="x", rotation=20)
        ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def write_summary(p: AblationsParams, out_dir: Path, root: Path | None = None,
                  figures: bool = True) -> dict[str, Any]:
    """Tables, sentences and figures of every question into ``out_dir``
    (``summary.json`` for ``dvc metrics``, ``summary.md``, ``<question>.png``)."""
    import matplotlib.pyplot as plt

    from facelib.io import write_json

    spread = seed_spread(p.backbone, root)
    base = variant_metrics(p, "", root)["base"]
    out_dir.mkdir(parents=True, exist_ok=True)
    summary: dict[str, Any] = {"backbone": p.backbone, "seed": p.seed,
                               "seed_spread": spread, "base": {k: base[k] for k in METRICS}}
    md = [f"# FACE ablations ({p.backbone}, seed {p.seed}, {p.dataset})", ""]
    for q in questions():
        table = question_table(p, q, root)
        slug = q.parameter
        summary[slug] = {"variants": {str(i): {k: float(table.loc[i, f"FACE {k}"])
                                               for k in METRICS} for i in table.index},
                         "verdict": verdict(table, q, spread)}
        md += [f"## {q.title}", "", table.to_markdown(floatfmt=".4f"), "",
               summary[slug]["verdict"], ""]
        if figures:
            fig = plot_question(table, q, base)
            fig.savefig(out_dir / f"{slug}.png", dpi=110)
            plt.close(fig)
    ma = map_vs_align(root)
    summary["map_vs_align"] = {"verdict": map_align_verdict(ma),
                               "mean_delta": {k: float(ma[f"Δ {k}"].mean()) for k in METRICS}}
    md += ["## map only vs map + align (main runs)", "", ma.to_markdown(index=False,
                                                                          floatfmt=".4f"), "",
           summary["map_vs_align"]["verdict"], ""]
    (out_dir / "summary.md").write_text("\n".join(md))
    write_json(summary, out_dir / "summary.json")
    return summary


def overrides(value: str) -> dict[str, Any]:
    """``"--set word_num=4 --set pinv_words=true"`` -> ``{"word_num": 4, "pinv_words": True}``
    (parsed by the pipeline's own ``--set`` reader)."""
    from facelib.pipeline import _parse_set

    return _parse_set([tok for tok in value.split() if tok != "--set"])


def prepare_smoke_ablations(p: AblationsParams, progress: bool = False) -> Path:
    """For an unpublished (smoke) run: tiny FACE runs under ``build/smoke`` (the main run of
    ``p.backbone`` for seeds ``p.seed`` and ``p.seed + 1``, and one run per variant of
    ``p.variants``), each trained unless one with the same params is there; returns the
    reports root to read them from."""
    from facelib.config import build
    from facelib.systems.face.interpret.stage import SMOKE_FACE
    from facelib.systems.face.params import FaceParams
    from facelib.systems.face.stage import ensure_smoke_run
    from facelib.train.stage import output_root

    base = {**SMOKE_FACE, "dataset": p.dataset, "backbone": p.backbone}
    runs = [{**base, "seed": s} for s in (p.seed, p.seed + 1)]
    runs += [{**base, "seed": p.seed, "tag": tag, **overrides(value)}
             for tag, value in p.variants.items()]
    for values in runs:
        ensure_smoke_run(build(FaceParams, values, "face"), progress)
    return output_root(False) / "reports"
