"""Aggregation over seeds and paired significance tests over test users.

Summary (per system, backbone, metric; n seeds, test-metric means m_s):

    mean = (1/n) Σ_s m_s        std = sqrt(Σ_s (m_s - mean)² / (n - 1))   (blank if n < 2)
    relative change vs base (%) = 100 · (mean - mean_base) / mean_base

Paired test of a treatment T against a reference R (same backbone): each user's metric is
first averaged over the seeds (the split is fixed, so the users are the same), giving
t_u, r_u for the M evaluated users; with d_u = t_u - r_u:

    mean difference  d̄ = (1/M) Σ_u d_u,   95% CI  d̄ ± t_{0.975, M-1} · sd(d) / sqrt(M)
    Wilcoxon signed-rank (two-sided, zero differences dropped: zero_method="wilcox")
    paired t-test (two-sided)

Identical arrays give d̄ = 0 and p = 1 (no test is run); a constant non-zero difference
gives the t-test p = 0 (the statistic is infinite).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats

from facelib.results.systems import METRICS, Run

SUMMARY_COLUMNS = ["backbone", "system", "metric", "n_seeds", "mean", "std", "rel_base_pct"]


def runs_frame(runs: list[Run]) -> pd.DataFrame:
    """One row per run and metric: system, backbone ("" if backbone-free), seed, value."""
    rows = [{"system": r.system, "backbone": r.backbone or "", "seed": r.seed,
             "metric": m, "value": r.metrics[m]} for r in runs for m in METRICS]
    return pd.DataFrame(rows, columns=["system", "backbone", "seed", "metric", "value"])


def summarize(runs: list[Run], systems: list[str], metrics: list[str],
              base: str = "base") -> pd.DataFrame:
    """Mean and sample std over seeds, relative change vs ``base`` on the same backbone.

    Returns columns :data:`SUMMARY_COLUMNS`, rows ordered by backbone (first seen) then
    ``systems``; std is NaN with fewer than two seeds, rel_base_pct NaN for the base row
    and for backbone-free systems.
    """
    df = runs_frame(runs)
    df = df[df.metric.isin(metrics)]
    if df.empty:
        return pd.DataFrame(columns=SUMMARY_COLUMNS)
    g = df.groupby(["backbone", "system", "metric"], sort=False)["value"]
    out = pd.DataFrame({"n_seeds": g.size(), "mean": g.mean(),
                        "std": g.std(ddof=1)}).reset_index()
    unseeded = out.system.isin(df[df.seed.isna()].system.unique())
    out.loc[unseeded, "n_seeds"] = 0
    out.loc[unseeded | (out.n_seeds < 2), "std"] = np.nan
    ref = out[out.system == base].set_index(["backbone", "metric"])["mean"]
    key = pd.MultiIndex.from_frame(out[["backbone", "metric"]])
    base_mean = ref.reindex(key).to_numpy()
    out["rel_base_pct"] = 100.0 * (out["mean"].to_numpy() - base_mean) / base_mean
    out.loc[(out.system == base) | (out.backbone == ""), "rel_base_pct"] = np.nan
    ranks = {"backbone": list(dict.fromkeys(["", *out.backbone])), "system": systems,
             "metric": metrics}
    out = out.sort_values(by=list(ranks), key=lambda c: c.map(
        {v: i for i, v in enumerate(ranks[c.name])}), kind="stable")
    return out[SUMMARY_COLUMNS].reset_index(drop=True)


@dataclass(frozen=True)
class PairedTest:
    """Paired comparison over M users: treatment - reference (see the module docstring)."""

    n_users: int
    n_nonzero: int          # users whose difference is not 0 (those Wilcoxon ranks)
    treatment_mean: float
    reference_mean: float
    mean_diff: float
    ci_low: float
    ci_high: float
    rel_pct: float          # 100 · mean_diff / reference_mean
    p_wilcoxon: float
    p_ttest: float

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def paired_test(treatment: np.ndarray, reference: np.ndarray, ci: float = 0.95) -> PairedTest:
    """Two-sided paired tests of ``treatment`` [M] against ``reference`` [M] (same users)."""
    t = np.asarray(treatment, dtype=np.float64)
    r = np.asarray(reference, dtype=np.float64)
    if t.shape != r.shape or t.ndim != 1 or len(t) < 2:
        raise ValueError(f"paired_test needs two aligned 1-d arrays of >= 2 users, got "
                         f"{t.shape} and {r.shape}")
    d = t - r
    n = len(d)
    mean = float(d.mean())
    nonzero = int(np.count_nonzero(d))
    sd = float(d.std(ddof=1))
    half = float(stats.t.ppf((1.0 + ci) / 2.0, n - 1)) * sd / math.sqrt(n)
    if nonzero == 0:
        p_w = p_t = 1.0
    else:
        p_w = float(stats.wilcoxon(d, zero_method="wilcox", alternative="two-sided").pvalue)
        p_t = 0.0 if sd == 0.0 else float(stats.ttest_1samp(d, 0.0).pvalue)
    ref_mean = float(r.mean())
    rel = 100.0 * mean / ref_mean if ref_mean != 0 else math.nan
    return PairedTest(n_users=n, n_nonzero=nonzero, treatment_mean=float(t.mean()),
                      reference_mean=ref_mean, mean_diff=mean, ci_low=mean - half,
                      ci_high=mean + half, rel_pct=rel, p_wilcoxon=p_w, p_ttest=p_t)


def significant(test: PairedTest | pd.Series, alpha: float) -> bool:
    """A difference counts as significant when both the Wilcoxon signed-rank test and the
    paired t-test give p < ``alpha`` (no correction for multiple comparisons)."""
    return bool(test.p_wilcoxon < alpha and test.p_ttest < alpha)
