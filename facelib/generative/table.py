"""The generative pipeline's tables: one per protocol, never mixed.

- **Leave-one-out** (LC-Rec's protocol): SASRec, the CF backbones, LC-Rec and Semantic
  Convergence, HR@{1, 5, 10} and NDCG@{5, 10}, mean ± sd over seeds.
- **3:1:1** (the study's split): LC-Rec beside the study's base LightGCN and FACE rows
  (read from ``reports/metrics/results.json``), Recall/NDCG@{5, 10, 20}; LC-Rec's
  candidates are beam-limited, and the table says so.

Each cell comes from the runs' metrics JSON (``reports/metrics/generative/<system>/``); a
missing run is an error naming the stage to run, and a run that ended at a cap is flagged in
the table and in the sentences.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from facelib import paths
from facelib.config import dataset_param, param
from facelib.data.errors import DataError
from facelib.eval import KS
from facelib.generative.leave_one_out import HR_KS, NDCG_KS
from facelib.generative.run import BASELINES, LABELS, PIPELINE, PROTOCOLS
from facelib.io import write_json, write_text
from facelib.train.stage import output_root

LOO_METRICS = tuple(f"hr@{k}" for k in HR_KS) + tuple(f"ndcg@{k}" for k in NDCG_KS)
RATIO_METRICS = tuple(f"{m}@{k}" for m in ("recall", "ndcg") for k in KS)
GENERATORS = ("lcrec", "semconv")  # the systems that generate item indices
STAGE_OF = {"sasrec": "loo_baselines", "mf": "loo_baselines", "lightgcn": "loo_baselines",
            "lcrec": "lcrec", "semconv": "semconv"}


@dataclass(frozen=True)
class GenerativeParams:
    """``params.yaml`` section ``generative``: what the generative pipeline runs (its DVC
    matrices read these lists) and tables."""

    dataset: str = dataset_param()
    baselines: list[str] = param(list(BASELINES), choices=BASELINES,
                                 help="leave-one-out baselines: sasrec and CF backbones")
    seeds: list[int] = param([0, 1, 2], help="seeds of every generative run")
    protocols: list[str] = param(list(PROTOCOLS), choices=PROTOCOLS,
                                 help="protocols LC-Rec is trained and evaluated on")


def metrics_path(system: str, run: str, root: Path | None = None) -> Path:
    """The metrics JSON of run ``run`` of ``system`` (``root``: repository root)."""
    root = paths.repo_root() if root is None else Path(root)
    group = "loo_baselines" if system in BASELINES else system
    return root / "reports" / "metrics" / PIPELINE / group / f"{run}.json"


def _read(system: str, run: str, root: Path | None) -> dict[str, Any]:
    path = metrics_path(system, run, root)
    if not path.is_file():
        raise DataError(f"no metrics for {LABELS[system]} run {run} at {path}; run the "
                        f"{STAGE_OF[system]} stage first (make generative)")
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError:
        raise DataError(f"{path} is not valid JSON; rerun the {STAGE_OF[system]} stage "
                        f"(make generative)") from None


def runs(p: GenerativeParams, root: Path | None = None, missing_ok: bool = False
         ) -> tuple[pd.DataFrame, list[str]]:
    """One row per run (system, protocol, seed, stopped_by, the catalogue size ``n_items``
    and the language-model ``backend`` where the run records them, its test metrics) and
    the runs not found (an error unless ``missing_ok``, as in a smoke run)."""
    rows, missing = [], []
    wanted = [(b, f"{b}-{s}") for b in p.baselines for s in p.seeds]
    wanted += [("lcrec", f"{proto}-{s}") for proto in p.protocols for s in p.seeds]
    wanted += [("semconv", f"{s}") for s in p.seeds]
    for system, run in wanted:
        if missing_ok and not metrics_path(system, run, root).is_file():
            missing.append(f"{system}/{run}")
            continue
        m = _read(system, run, root)
        rows.append({"system": system, "protocol": m["protocol"], "seed": m["seed"],
                     "stopped_by": m["stopped_by"], "n_items": m.get("n_items"),
                     "backend": (m.get("params") or {}).get("backend"), **m["test"]})
    columns = ["system", "protocol", "seed", "stopped_by", "n_items", "backend",
               *dict.fromkeys(LOO_METRICS + RATIO_METRICS)]
    return pd.DataFrame(rows).reindex(columns=columns), missing


def summarise(df: pd.DataFrame, protocol: str) -> pd.DataFrame:
    """Mean and sd over seeds per system of one protocol: columns ``<metric>`` and
    ``<metric>_sd``, plus ``seeds`` and ``capped`` (runs that ended at a cap)."""
    metrics = LOO_METRICS if protocol == "leave_one_out" else RATIO_METRICS
    part = df[df["protocol"] == protocol]
    out = part.groupby("system", sort=False)[list(metrics)].agg(["mean", "std"])
    out.columns = [m if stat == "mean" else f"{m}_sd" for m, stat in out.columns]
    out["seeds"] = part.groupby("system", sort=False)["seed"].count()
    out["capped"] = part.groupby("system", sort=False)["stopped_by"].apply(
        lambda s: int((s == "cap").sum()))
    return out


def study_rows(dataset: str, root: Path | None = None, backbone: str = "lightgcn"
               ) -> pd.DataFrame:
    """The study's base and FACE rows of ``backbone`` on the 3:1:1 split (mean, sd) from
    ``reports/metrics/results.json``; empty when the study has not run on ``dataset``."""
    path = (paths.repo_root() if root is None else Path(root)) / "reports" / "metrics" / \
        "results.json"
    if not path.is_file():
        return pd.DataFrame()
    results = json.loads(path.read_text())
    if results.get("dataset") != dataset:
        return pd.DataFrame()
    table = results["table"].get(backbone, {})
    rows = {}
    for system in ("base", "face"):
        cells = table.get(system, {})
        row = {m: cells[m]["mean"] for m in RATIO_METRICS if m in cells}
        row.update({f"{m}_sd": cells[m]["std"] for m in RATIO_METRICS if m in cells})
        if row:
            rows[f"{backbone} {system} (study)"] = row
    return pd.DataFrame(rows).T


def tables(df: pd.DataFrame, dataset: str, root: Path | None = None
           ) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The two summaries of ``runs``: leave-one-out, and 3:1:1 with the study's rows
    (``root``: where ``reports/metrics/results.json`` lives, the repository by default)."""
    return (summarise(df, "leave_one_out"),
            pd.concat([summarise(df, "ratio"), study_rows(dataset, root)]))


def markdown(summary: pd.DataFrame, metrics: tuple[str, ...]) -> str:
    """``mean ± sd`` cells as a Markdown table (rows labelled, capped runs marked)."""
    head = "| system | " + " | ".join(metrics) + " | seeds |"
    lines = [head, "|" + "---|" * (len(metrics) + 2)]
    for name, row in summary.iterrows():
        label = LABELS.get(str(name), str(name))
        capped = row.get("capped", 0)
        if not pd.isna(capped) and capped:   # study rows carry no count (NaN)
            label += f" (⚠ {int(capped)} run(s) ended at a cap)"
        cells = []
        for m in metrics:
            if m not in row or pd.isna(row[m]):
                cells.append("–")
                continue
            sd = row.get(f"{m}_sd", np.nan)
            cells.append(f"{row[m]:.4f}" + ("" if pd.isna(sd) else f" ± {sd:.4f}"))
        seeds = row.get("seeds", np.nan)
        lines.append(f"| {label} | " + " | ".join(cells) + " | "
                     + ("–" if pd.isna(seeds) else str(int(seeds))) + " |")
    return "\n".join(lines)


def findings(df: pd.DataFrame, loo: pd.DataFrame, ratio: pd.DataFrame,
             metric: str = "hr@10", ratio_metric: str = "recall@20") -> list[str]:
    """What the tables say, as sentences written from the numbers: the leave-one-out
    ranking by ``metric``, each generative system against each reference point (SASRec
    and the CF backbones; as a ratio of means and seed by seed), chance (a random ranking's
    HR@K = K / items), LC-Rec on the 3:1:1 split against the study's rows by
    ``ratio_metric``, and what the backend lets them say about the papers' LLM results.
    Systems or runs that are absent are left out of the sentences."""
    said: list[str] = []
    k = int(metric.split("@")[1])
    if metric in loo and len(loo):
        means = loo[metric].dropna().sort_values(ascending=False)
        said.append(f"On leave-one-out, {metric.upper()} (mean over seeds) ranks "
                    + ", ".join(f"{LABELS.get(str(s), s)} {v:.4f}" for s, v in means.items())
                    + ".")
        refs = [s for s in BASELINES if s in means.index]
        per_seed = df[df["protocol"] == "leave_one_out"].pivot_table(
            index="seed", columns="system", values=metric)  # seed x system
        for system in (s for s in GENERATORS if s in means.index):
            parts = []
            for ref in refs:
                both = per_seed[[system, ref]].dropna()   # seeds both ran
                above = int((both[system] > both[ref]).sum())
                parts.append(f"{means[system] / means[ref]:.2f}x {LABELS[ref]}'s "
                             f"(above it in {above} of {len(both)} seeds)")
            if parts:
                said.append(f"{LABELS[system]}'s {metric.upper()} is " + ", ".join(parts)
                            + ".")
        items = df["n_items"].dropna()
        if len(items) and len(means):
            n_items = int(items.iloc[0])
            chance = k / n_items
            said.append(f"A random ranking of the {n_items:,} items has "
                        f"{metric.upper()} {chance:.4f}: every system here is "
                        f"{means.min() / chance:.1f}x to {means.max() / chance:.1f}x that.")
    on_ratio = ratio.get(ratio_metric, pd.Series(dtype=float)).dropna()
    study = on_ratio.drop("lcrec", errors="ignore")
    if "lcrec" in on_ratio and len(study):
        lcrec = on_ratio["lcrec"]
        said.append(f"On the 3:1:1 split LC-Rec's {ratio_metric.capitalize()} is "
                    f"{lcrec:.4f}, " + ", ".join(f"{lcrec / v:.2f}x {s}'s ({v:.4f})"
                                                 for s, v in study.items())
                    + "; its candidates are only the items its beam generates.")
    backends = set(df.loc[df["system"].isin(GENERATORS), "backend"].dropna())
    if backends == {"tiny"}:
        said.append("Every LC-Rec and Semantic Convergence row uses the tiny backend, a "
                    "language model trained from scratch with no pretrained language "
                    "knowledge: these rows test the mechanism (item indices, instruction "
                    "tasks, trie-constrained generation) and cannot say what a pretrained LLM "
                    "adds, so they neither confirm nor refute the papers' LLM results.")
    return said


def run_table(p: GenerativeParams, publish: bool = False) -> dict[str, Any]:
    """Collect every run, write ``reports/generative/generative.json`` and ``results.md``
    and return the JSON's content. Unpublished (smoke) tables read and write below
    ``build/smoke`` and list the runs they did not find instead of failing."""
    root = output_root(publish)
    df, missing = runs(p, root, missing_ok=not publish)
    loo, ratio = tables(df, p.dataset)
    folder = root / "reports" / PIPELINE
    capped = int((df["stopped_by"] == "cap").sum())
    md = ("### Leave-one-out (HR/NDCG, one target per user)\n\n"
          + markdown(loo, LOO_METRICS)
          + "\n\n### 3:1:1 split (Recall/NDCG over all held-out items; LC-Rec's candidates "
            "are beam-limited)\n\n" + markdown(ratio, RATIO_METRICS))
    if capped:
        md += (f"\n\n⚠ {capped} run(s) ended at an epoch cap, not by early stopping: their "
               f"numbers are not evidence about the method.")
    said = findings(df, loo, ratio)
    if said:
        md += "\n\n" + "\n".join(f"- {line}" for line in said)
    if missing:
        md += f"\n\nSmoke table: runs not found: {', '.join(missing)}."
    result = {"dataset": p.dataset, "seeds": p.seeds, "runs": df.to_dict("records"),
              "missing": missing,
              "leave_one_out": loo.reset_index().to_dict("records"),
              "ratio": ratio.reset_index().to_dict("records"), "capped_runs": capped,
              "findings": said}
    write_json(result, folder / "generative.json")
    write_text(md + "\n", folder / "results.md")
    return {**result, "markdown": md}
