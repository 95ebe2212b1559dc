"""Figures of the interpretability studies (matplotlib; the caller saves or shows them)."""

from __future__ import annotations

from typing import Any

import numpy as np

from facelib.systems.face.interpret.descriptors import LABELS, VARIANTS
from facelib.systems.face.interpret.summary import leaf

PANELS = (  # (study, entity, metric, title)
    ("retrieval", "user", "mrr", "profile retrieval, users (MRR)"),
    ("retrieval", "item", "mrr", "profile retrieval, items (MRR)"),
    ("keywords", "user", "synonym_share", "profile words or synonyms, users"),
    ("keywords", "item", "synonym_share", "profile words or synonyms, items"),
    ("genre", "item", "map", "genre ranking of items (mAP)"),
    ("stability", "all", "jaccard", "stability across seeds (Jaccard)"),
)
ORDER = ("face", "map", "random", "nearest", "prior", "profile")


def plot_studies(metrics: dict[str, Any]) -> Any:
    """One bar panel per headline metric: variants on x, one bar per backbone, error bars
    = standard deviation over seeds."""
    import matplotlib.pyplot as plt

    backbones = metrics.get("backbones", [])
    panels = [p for p in PANELS if any(metrics.get(p[0], {}).get(b) for b in backbones)]
    cols = min(3, max(len(panels), 1))
    rows = max(1, -(-len(panels) // cols))
    fig, axes = plt.subplots(rows, cols, figsize=(5.2 * cols, 3.6 * rows), squeeze=False)
    width = 0.8 / max(len(backbones), 1)
    for ax, (study, entity, metric, title) in zip(axes.flat, panels, strict=False):
        variants = [v for v in ORDER if any(
            leaf(metrics, study, b, v, entity, metric) for b in backbones)]
        x = np.arange(len(variants))
        for j, b in enumerate(backbones):
            vals = [leaf(metrics, study, b, v, entity, metric) for v in variants]
            means = [v["mean"] if v and v["mean"] is not None else np.nan for v in vals]
            stds = [v["std"] if v else 0.0 for v in vals]
            ax.bar(x + (j - (len(backbones) - 1) / 2) * width, means, width, yerr=stds,
                   label=b, capsize=2)
        ax.set_xticks(x, [LABELS[v].replace(" (", "\n(") for v in variants], fontsize=7.5)
        ax.set_title(title, fontsize=10)
        ax.grid(axis="y", alpha=0.3)
    for ax in list(axes.flat)[len(panels):]:
        ax.axis("off")
    if panels:
        axes.flat[0].legend(title="backbone", fontsize=8)
    fig.tight_layout()
    return fig


def plot_usage(counts: dict[str, np.ndarray], title: str) -> Any:
    """Rank-frequency curves (log-log) of word usage, one line per descriptor set
    ``{label: [V] counts}``: how concentrated each variant's use of the codebook is."""
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.5, 4.2))
    for label, c in counts.items():
        c = np.sort(np.asarray(c))[::-1]
        c = c[c > 0]
        ax.loglog(np.arange(1, len(c) + 1), c / c.sum(), label=f"{label} ({len(c):,} words)")
    ax.set_xlabel("word rank")
    ax.set_ylabel("share of descriptor slots")
    ax.set_title(title, fontsize=10)
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def plot_items(metrics: dict[str, Any]) -> Any:
    """Studies 6 and 7: item-retrieval accuracy against the number of candidates N (one
    panel per backbone, one line per variant, chance 1/N dashed), and item-generation
    MRR and hit@10 (bars: variants on x, one bar per backbone, chance as a dashed line).
    Error bars: standard deviation over seeds."""
    import matplotlib.pyplot as plt

    backbones = metrics.get("backbones", [])
    chance = metrics.get("chance", {})
    ns = sorted(int(k.split("@")[1]) for k in chance.get("item_retrieval", {}))
    judge = metrics.get("item_retrieval_info", {}).get("judge", "")
    gen = [m for m in ("mrr", "hit@10") if m in chance.get("item_generation", {})]
    panels = len(backbones) + len(gen)
    fig, axes = plt.subplots(1, max(panels, 1), figsize=(4.6 * max(panels, 1), 3.8),
                             squeeze=False)
    axes = list(axes.flat)
    for ax, b in zip(axes, backbones, strict=False):
        for v in VARIANTS:
            vals = [leaf(metrics, "item_retrieval", b, v, "item", f"acc@{n}") for n in ns]
            if not any(vals):
                continue
            ax.errorbar(ns, [x["mean"] if x and x["mean"] is not None else np.nan for x in vals],
                        yerr=[x["std"] if x else 0.0 for x in vals], marker="o", capsize=2,
                        label=LABELS[v])
        ax.plot(ns, [1 / n for n in ns], "k--", lw=1, label="chance 1/N")
        ax.set_xticks(ns)
        ax.set_xlabel("candidates N")
        ax.set_ylabel("accuracy")
        ax.set_ylim(bottom=0)
        ax.set_title(f"item retrieval, {b}\njudge: {judge}", fontsize=9)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    width = 0.8 / max(len(backbones), 1)
    x = np.arange(len(VARIANTS))
    names = {"mrr": "MRR", "hit@10": "hit@10"}
    for ax, metric in zip(axes[len(backbones):], gen, strict=False):
        for j, b in enumerate(backbones):
            vals = [leaf(metrics, "item_generation", b, v, "item", metric) for v in VARIANTS]
            ax.bar(x + (j - (len(backbones) - 1) / 2) * width,
                   [v["mean"] if v and v["mean"] is not None else np.nan for v in vals],
                   width, yerr=[v["std"] if v else 0.0 for v in vals], label=b, capsize=2)
        ax.axhline(chance["item_generation"][metric], color="k", ls="--", lw=1,
                   label="chance")
        ax.set_xticks(x, [LABELS[v].replace(" (", "\n(") for v in VARIANTS], fontsize=7.5)
        ax.set_title(f"item generation through FACE's decoder ({names[metric]})", fontsize=9)
        ax.grid(axis="y", alpha=0.3)
        ax.legend(fontsize=7)
    fig.tight_layout()
    return fig
