"""The ``results`` stage: one table over systems x backbones x seeds, paired significance
tests, verdict sentences and figures.

Reads (below ``root``: the repository, or ``build/smoke/results`` for a smoke run):

- each system's metrics JSON (:data:`facelib.results.systems.SYSTEMS`): most popular
  ``reports/metrics/cf/most_popular.json``, base ``reports/metrics/cf/<bb>-<seed>.json``,
  control / FACE map-only / FACE ``reports/metrics/systems/face/<bb>-<seed>.json``;
- per-user test metrics for the paired tests, from the stage that made each system's rows:
  ``data/cf/<dataset>/per_user-<bb>-<seed>.npz`` (base) and
  ``data/systems/face/<dataset>/<bb>-<seed>/per_user.npz`` (map, FACE, control).

Writes: ``reports/results/results.csv`` (summary, long form), ``results.md`` (the tables,
verdicts, provenance), ``significance.csv`` (every comparison x metric),
``reports/metrics/results.json`` (headline numbers and p-values, for ``dvc metrics``) and
``reports/figures/results_*.png``.
"""

from __future__ import annotations

import datetime as dt
import json
import math
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from facelib import paths
from facelib.config import ParamsError, as_dict, dataset_param, param
from facelib.models.registry import BACKBONES
from facelib.io import write_json
from facelib.results import tables
from facelib.io import save_figure, write_text
from facelib.results.stats import PairedTest, paired_test, summarize
from facelib.results.systems import (METRICS, SYSTEMS, TABLES, ResultsError, Run, System,
                                     load_per_user, load_runs, own_comparisons, table_rows)

OUTPUTS = {"csv": "reports/results/results.csv", "md": "reports/results/results.md",
           "significance": "reports/results/significance.csv",
           "json": "reports/metrics/results.json"}
FIGURES = {"bars": "reports/figures/results_bars.png",
           "per_user": "reports/figures/results_per_user.png"}
RELATED_DIR = "reports/related"  # the related table's outputs: the same names, one folder


def outputs(table: str) -> tuple[dict[str, str], dict[str, str]]:
    """Where ``table`` is written (files, figures), relative to the root: the study's in
    :data:`OUTPUTS` and :data:`FIGURES`, the related table's all under :data:`RELATED_DIR`."""
    if table == "study":
        return dict(OUTPUTS), dict(FIGURES)
    return ({k: f"{RELATED_DIR}/{Path(v).name}" for k, v in OUTPUTS.items()},
            {k: f"{RELATED_DIR}/{Path(v).name}" for k, v in FIGURES.items()})


@dataclass(frozen=True)
class ResultsParams:
    """``params.yaml`` section ``results``."""

    dataset: str = dataset_param()
    backbones: list[str] = param(["lightgcn", "mf"], choices=BACKBONES,
                                 help="backbones with runs to tabulate")
    seeds: list[int] = param([0, 1, 2], ge=0, help="seeds of every seeded system")
    table: str = param("study", choices=TABLES,
                       help="study (dvc.yaml) or related (related/dvc.yaml): which rows by "
                            "default and where the table is written")
    systems: list[str] = param([], choices=tuple(SYSTEMS),
                               help="table rows, in order ([]: the table's rows)")
    comparisons: list[list[str]] = param(
        [], help="paired tests: [treatment, reference] ([]: each row's own among the rows)")
    metrics: list[str] = param(list(METRICS), choices=METRICS)
    headline: list[str] = param(["recall@20", "ndcg@20"], choices=METRICS,
                                help="figures, README, verdicts (the first)")
    alpha: float = param(0.05, gt=0.0, lt=1.0, help="significance level")
    ci: float = param(0.95, gt=0.0, lt=1.0, help="confidence level of the mean difference")

    def __post_init__(self) -> None:
        where = "params [results."
        if not self.systems:  # frozen: the defaults that depend on table are set once here
            object.__setattr__(self, "systems", table_rows(self.table))
        if not self.comparisons:
            object.__setattr__(self, "comparisons", own_comparisons(self.systems))
        if not self.seeds or len(set(self.seeds)) != len(self.seeds):
            raise ParamsError(f"{where}seeds]: give at least one seed, each once")
        for pair in self.comparisons:
            if len(pair) != 2 or pair[0] == pair[1]:
                raise ParamsError(f"{where}comparisons]: {pair!r} is not a [treatment, "
                                  f"reference] pair of two systems")
            for s in pair:
                if s not in self.systems or SYSTEMS[s].per_user is None:
                    raise ParamsError(f"{where}comparisons]: {s!r} is not a system of "
                                      f"results.systems with per-user metrics")
        lost = [m for m in self.headline if m not in self.metrics]
        if lost:
            raise ParamsError(f"{where}headline]: {', '.join(lost)} not in results.metrics")


@dataclass
class Results:
    """Everything the stage computes (nothing is written yet)."""

    params: ResultsParams
    runs: list[Run]
    summary: pd.DataFrame        # backbone, system, metric, n_seeds, mean, std, rel_base_pct
    significance: pd.DataFrame   # backbone, treatment, reference, metric, n_seeds, PairedTest
    diffs: pd.DataFrame          # backbone, treatment, reference, user, diff (headline[0])
    sentences: list[str]
    provenance: dict[str, Any]
    agreement: float = 0.0       # max |per-user mean - JSON mean| over tested systems
    markdown: str = field(default="", repr=False)


def results_root(publish: bool) -> Path:
    """The repository root for published runs, ``build/smoke/results`` otherwise."""
    return paths.repo_root() if publish else paths.repo_root() / "build" / "smoke" / "results"


def provenance(runs: list[Run], root: Path, p: ResultsParams, produced: str) -> dict[str, Any]:
    """When, on what data, with which profile builder and compute profile."""
    face = [r.record for r in runs if "bounds" in r.record]
    prov: dict[str, Any] = {"produced": produced, "dataset": p.dataset, "seeds": p.seeds,
                            "backbones": p.backbones}
    data_json = root / "reports" / "metrics" / "data.json"
    if data_json.is_file():
        data = json.loads(data_json.read_text())
        if data.get("dataset") == p.dataset:
            prov.update(split_seed=data.get("seed"), users=data.get("users"),
                        items=data.get("items"), test_interactions=data.get("test"))
    builders = sorted({str(r.record["profile_builder"]) for r in runs
                       if r.record.get("profile_builder")})  # every system that read profiles
    prov["profile_builder"] = ", ".join(builders) or None
    text_json = root / "reports" / "metrics" / "text.json"  # the text stage's record
    if builders and text_json.is_file():
        text = json.loads(text_json.read_text())
        if text.get("dataset") == p.dataset and text.get("builder") in builders:
            prov["profile_encoder"] = text.get("encoder")
    if face:
        b = face[0]["bounds"]
        if any(r["bounds"] != b for r in face):
            warnings.warn("the face runs used different bounds; the provenance shows the "
                          "first run's", stacklevel=2)
        bounded = any(b.get(k) for k in ("map_steps_per_epoch", "align_steps_per_epoch",
                                         "align_entities"))
        devices = ", ".join(sorted({str(r.get("device")) for r in face}))
        dims = ", ".join(sorted({str(r.get("emb_dim")) for r in face}))
        steps = lambda n: f"{n} steps" if n else "full"  # noqa: E731
        prov["bounds"] = b
        aligned = (f"batches of {b.get('align_batch_size')} distinct users and items"
                   if b.get("align_batch") == "entities"
                   else f"{b.get('align_entities') or 'all'} rows of each BPR batch")
        prov["compute_profile"] = (
            f"{'step-bounded' if bounded else 'full-epoch'} runs on {devices} (d = {dims};"
            f" FACE C = {b.get('word_num')}, D = {b.get('word_dim')}, FFN "
            f"{b.get('ffn_dim')}, batch {b.get('batch_size')}, map <= "
            f"{b.get('map_max_epochs')} epochs x {steps(b.get('map_steps_per_epoch'))}, "
            f"align <= {b.get('align_max_epochs')} epochs x "
            f"{steps(b.get('align_steps_per_epoch'))} over {aligned}, early stopping with "
            f"patience {b.get('patience')})")
    return prov


def _compare(root: Path, p: ResultsParams, registry: Mapping[str, System]
             ) -> tuple[pd.DataFrame, pd.DataFrame, dict[tuple[str, str], dict[str, float]]]:
    rows, diffs, means = [], [], {}
    for backbone in p.backbones:
        cache: dict[str, Any] = {}
        for pair in p.comparisons:
            for s in pair:
                if s not in cache:
                    cache[s] = load_per_user(root, registry[s], backbone, p.seeds, p.dataset,
                                             p.metrics)
                    if cache[s] is not None:
                        means[(backbone, s)] = {m: float(v.mean()) for m, v in
                                                cache[s][1].items()}
            t, r = cache[pair[0]], cache[pair[1]]
            if t is None or r is None:
                continue
            if not np.array_equal(t[0], r[0]):
                raise ResultsError(f"{backbone}: {pair[0]} and {pair[1]} were evaluated on "
                                   f"different test users; re-run their stages")
            for m in p.metrics:
                test: PairedTest = paired_test(t[1][m], r[1][m], p.ci)
                rows.append({"backbone": backbone, "treatment": pair[0], "reference": pair[1],
                             "metric": m, "n_seeds": len(p.seeds), **test.as_dict()})
            m0 = p.headline[0]
            diffs.append(pd.DataFrame({"backbone": backbone, "treatment": pair[0],
                                       "reference": pair[1], "user": t[0],
                                       "diff": t[1][m0] - r[1][m0]}))
    cols = ["backbone", "treatment", "reference", "metric", "n_seeds",
            *PairedTest.__dataclass_fields__]
    diff_cols = ["backbone", "treatment", "reference", "user", "diff"]
    return (pd.DataFrame(rows, columns=cols),
            pd.concat(diffs, ignore_index=True) if diffs else pd.DataFrame(columns=diff_cols),
            means)


def seeds_higher(runs: list[Run], sig: pd.DataFrame) -> list[int]:
    """For each row of ``sig``: in how many seeds the treatment's test metric (its metrics
    JSON) is above the reference's on that backbone (the seed-level view of the test)."""
    value = {(r.system, r.backbone, r.seed): r.metrics for r in runs}
    out = []
    for row in sig.itertuples():
        seeds = {r.seed for r in runs if r.system == row.treatment and r.backbone == row.backbone}
        out.append(sum(value[(row.treatment, row.backbone, s)][row.metric]
                       > value[(row.reference, row.backbone, s)][row.metric]
                       for s in seeds if (row.reference, row.backbone, s) in value))
    return out


def compute_results(p: ResultsParams, root: Path | None = None, produced: str | None = None,
                    registry: Mapping[str, System] = SYSTEMS) -> Results:
    """Load every run, summarise over seeds, test the comparisons, write the sentences."""
    root = Path(root) if root is not None else paths.repo_root()
    runs = load_runs(root, p.systems, p.backbones, p.seeds, p.dataset, registry)
    summary = summarize(runs, p.systems, p.metrics)
    sig, diffs, means = _compare(root, p, registry)
    sig["seeds_higher"] = seeds_higher(runs, sig)
    gap = 0.0
    for (backbone, s), per_user in means.items():
        json_means = summary[(summary.backbone == backbone) & (summary.system == s)]
        for row in json_means.itertuples():
            gap = max(gap, abs(per_user[row.metric] - row.mean))
    if gap > 1e-6:
        warnings.warn(f"per-user means differ from the metrics JSON by up to {gap:.2e}",
                      stacklevel=2)
    sentences = [tables.backbone_sentence(b, sig, p.comparisons, p.headline[0], p.alpha,
                                          p.ci, registry) for b in p.backbones]
    converged = tables.convergence_sentence(runs)
    if converged:
        sentences.append(converged)
    produced = produced or dt.datetime.now(dt.timezone.utc).date().isoformat()
    prov = provenance(runs, root, p, produced)
    res = Results(p, runs, summary, sig, diffs, sentences, prov, gap)
    note = (f"A difference is called significant when both p-values are below {p.alpha} "
            f"(no correction for multiple comparisons); every metric is in "
            f"`{outputs(p.table)[0]['significance']}`.")
    res.markdown = tables.results_markdown(
        tables.summary_markdown(summary, p.metrics, registry),
        tables.significance_markdown(sig, p.headline, registry), sentences,
        tables.provenance_line(prov), note)
    return res


def _clean(obj: Any) -> Any:
    """NaN -> None, numpy scalars -> Python (valid JSON)."""
    if isinstance(obj, dict):
        return {k: _clean(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_clean(v) for v in obj]
    if isinstance(obj, (np.generic,)):
        obj = obj.item()
    if isinstance(obj, float) and math.isnan(obj):
        return None
    return obj


def headline_json(res: Results) -> dict[str, Any]:
    """``results.json``: headline means/stds per backbone and system, the paired tests of
    the headline metrics, the verdicts and the provenance."""
    p = res.params
    out: dict[str, Any] = {"dataset": p.dataset, "seeds": p.seeds, "params": as_dict(p),
                           "provenance": res.provenance,
                           "provenance_line": tables.provenance_line(res.provenance),
                           "verdicts": res.sentences, "table": {}, "significance": {}}
    for row in res.summary[res.summary.metric.isin(p.headline)].itertuples():
        cell = out["table"].setdefault(row.backbone or "all", {}).setdefault(row.system, {})
        cell[row.metric] = {"mean": row.mean, "std": row.std, "rel_base_pct": row.rel_base_pct}
    for row in res.significance[res.significance.metric.isin(p.headline)].itertuples():
        name = f"{row.treatment}_vs_{row.reference}"
        cell = out["significance"].setdefault(row.backbone, {}).setdefault(name, {})
        cell[row.metric] = {k: getattr(row, k) for k in (
            "mean_diff", "ci_low", "ci_high", "rel_pct", "p_wilcoxon", "p_ttest", "n_users")}
    return _clean(out)


def write_results(res: Results, root: Path | None = None,
                  figures: Mapping[str, Figure] | None = None) -> dict[str, Path]:
    """Write the CSVs, ``results.md``, ``results.json`` and the given figures (keys of
    :data:`FIGURES`) below ``root``, where the params' table goes (:func:`outputs`); return
    the written paths by key."""
    root = Path(root) if root is not None else paths.repo_root()
    files, figure_files = outputs(res.params.table)
    out = {k: root / v for k, v in files.items()}
    write_text(res.summary.to_csv(index=False, float_format="%.6g"), out["csv"])
    write_text(res.significance.to_csv(index=False, float_format="%.6g"), out["significance"])
    write_text(res.markdown, out["md"])
    write_json(headline_json(res), out["json"])
    for key, fig in (figures or {}).items():
        out[key] = save_figure(fig, root / figure_files[key])
    return out


def summary_from_files(root: Path, params: Mapping[str, Any]) -> str:
    """The test-metrics Markdown table recomputed from the committed metrics JSON alone
    (``params``: the ``params`` recorded in ``results.json``)."""
    from facelib.config import build

    p = build(ResultsParams, dict(params), "results")
    runs = load_runs(root, p.systems, p.backbones, p.seeds, p.dataset)
    return tables.summary_markdown(summarize(runs, p.systems, p.metrics), p.metrics)
