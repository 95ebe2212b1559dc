"""Figures of the results stage (seaborn): headline metrics per system and backbone with
the seed spread, and the distribution of per-user differences of the paired tests."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib.figure import Figure

from facelib.systems.rows import System
from facelib.models.registry import backbone_label as backbone_name
from facelib.results.systems import SYSTEMS
from facelib.results.tables import metric_name


def bar_figure(runs: pd.DataFrame, metrics: Sequence[str], systems: Sequence[str],
               registry: Mapping[str, System] = SYSTEMS) -> Figure:
    """Bars: mean over seeds per (backbone, system); error bars: sample std; dots: seeds.
    Backbone-free systems (most popular) are a dashed horizontal line.

    Args:
        runs: :func:`facelib.results.stats.runs_frame` (system, backbone, seed, metric, value).
    """
    fig, axes = plt.subplots(1, len(metrics), figsize=(5.8 * len(metrics), 4.0), squeeze=False)
    per_bb = runs[runs.backbone != ""].copy()
    per_bb["system"] = per_bb.system.map(lambda s: registry[s].label)
    per_bb["backbone"] = per_bb.backbone.map(backbone_name)
    order = [registry[s].label for s in systems if s in set(runs.system)
             and registry[s].per_backbone]
    for ax, metric in zip(axes[0], metrics):
        part = per_bb[per_bb.metric == metric]
        if not part.empty:
            sns.barplot(data=part, x="backbone", y="value", hue="system", hue_order=order,
                        errorbar="sd", capsize=0.1, ax=ax)
            sns.stripplot(data=part, x="backbone", y="value", hue="system", hue_order=order,
                          dodge=True, palette="dark:black", size=3, legend=False, ax=ax)
        for s in systems:
            flat = runs[(runs.system == s) & (runs.backbone == "") & (runs.metric == metric)]
            if len(flat):
                ax.axhline(float(flat.value.mean()), ls="--", color="grey",
                           label=registry[s].label)
        ax.set(title=f"test {metric_name(metric)}", xlabel="", ylabel=metric_name(metric))
        ax.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.08), ncol=2,
                  frameon=False)
    fig.tight_layout()
    return fig


def per_user_figure(diffs: pd.DataFrame, metric: str,
                    registry: Mapping[str, System] = SYSTEMS) -> Figure:
    """Histogram of per-user differences (seed-averaged) treatment - reference, one panel
    per backbone; the share of users whose metric did not change is in the legend.

    Args:
        diffs: rows (backbone, treatment, reference, user, diff) for ``metric``.
    """
    backbones = list(dict.fromkeys(diffs.backbone)) or [""]
    fig, axes = plt.subplots(1, len(backbones), figsize=(5.8 * len(backbones), 3.6),
                             squeeze=False)
    for ax, backbone in zip(axes[0], backbones):
        part = diffs[diffs.backbone == backbone]
        if part.empty:
            ax.text(0.5, 0.5, "no paired comparison", ha="center", transform=ax.transAxes)
            ax.set_axis_off()
            continue
        labels = {
            key: f"{registry[key[0]].label} − {registry[key[1]].label}\n"
                 f"({np.mean(g.to_numpy() == 0):.0%} unchanged)"
            for key, g in part.groupby(["treatment", "reference"], sort=False)["diff"]}
        part = part.assign(comparison=[labels[k] for k in zip(part.treatment, part.reference)])
        sns.histplot(data=part, x="diff", hue="comparison", bins=41, stat="proportion",
                     common_norm=False, element="step", ax=ax)
        sns.move_legend(ax, "upper center", bbox_to_anchor=(0.5, -0.2), fontsize=7,
                        title=None, frameon=False)
        ax.axvline(0.0, color="black", lw=0.8)
        ax.set_yscale("log")
        ax.set(title=f"{backbone_name(backbone)}: per-user difference",
               xlabel=f"Δ test {metric_name(metric)} (mean over seeds)",
               ylabel="share of users")
    fig.tight_layout()
    return fig
