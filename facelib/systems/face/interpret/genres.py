"""Study 3, genre consistency of item descriptors (zero-shot).

Every genre name is encoded by the frozen encoder; an item's descriptor sentence scores
each genre by cosine, and the ranking is compared with the item's true genres:

- ``p@1``: the top genre is one of the item's genres;
- ``map``: mean average precision of the genre ranking (per item: the mean, over its true
  genres g, of precision at g's rank; ties count against the item);
- ``f1@k``: F1 of the top k genres, k = the catalogue's mean genre count rounded (fixed
  for all items, so it uses no item's own count).

Baselines beside the descriptor variants: ``prior`` ranks genres by how many items carry
them (the same ranking for every item: the majority guess at p@1); ``profile`` scores with
the item's profile embedding (the text the descriptors are aligned to; it names the genres,
so it is an upper reference).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

SEPARATOR = "|"
MISSING = {"", "(no genres listed)", "unknown"}


def genre_lists(items: pd.DataFrame) -> list[list[str]] | None:
    """Each item's genres (``genres`` column, "A|B|C"), or None when there is no such column."""
    if "genres" not in items.columns:
        return None
    return [[g.strip() for g in str(v).split(SEPARATOR) if g.strip() not in MISSING]
            for v in items["genres"]]


def genre_names(lists: list[list[str]]) -> list[str]:
    """Distinct genres, sorted alphabetically."""
    return sorted({g for gs in lists for g in gs})


def genre_matrix(lists: list[list[str]], names: list[str]) -> np.ndarray:
    """[N, G] bool: item n has genre g."""
    col = {g: j for j, g in enumerate(names)}
    out = np.zeros((len(lists), len(names)), dtype=bool)
    for n, gs in enumerate(lists):
        for g in gs:
            out[n, col[g]] = True
    return out


def top_k(truth: np.ndarray) -> int:
    """The fixed k of f1@k: the mean number of genres per item with any, rounded (>= 1)."""
    counts = truth.sum(axis=1)
    counts = counts[counts > 0]
    return max(1, int(round(float(counts.mean())))) if len(counts) else 1


def average_precision(scores: np.ndarray, truth: np.ndarray) -> np.ndarray:
    """Per-item average precision of ranking genres by ``scores`` [N, G] against ``truth``
    [N, G] bool (pessimistic ties); NaN for items without a true genre."""
    # rank of genre g for item n: how many genres score >= it (itself included)
    ranks = (scores[:, None, :] >= scores[:, :, None]).sum(axis=2)  # [N, G]
    # true genres ranked at or above g
    above = ((scores[:, None, :] >= scores[:, :, None]) & truth[:, None, :]).sum(axis=2)
    prec = np.where(truth, above / ranks, 0.0)
    n_true = truth.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(n_true > 0, prec.sum(axis=1) / n_true, np.nan)


def genre_metrics(scores: np.ndarray, truth: np.ndarray, k: int) -> dict[str, float]:
    """p@1, map and f1@k of ``scores`` [N, G] against ``truth`` [N, G] (items without a true
    genre are left out)."""
    keep = truth.any(axis=1)
    scores, truth = np.asarray(scores, dtype=np.float64)[keep], truth[keep]
    if not len(truth):
        return {"p@1": float("nan"), "map": float("nan"), f"f1@{k}": float("nan")}
    top1 = scores.argmax(axis=1)
    p1 = truth[np.arange(len(truth)), top1].mean()
    k = min(k, truth.shape[1])
    pred = np.zeros_like(truth)
    np.put_along_axis(pred, np.argsort(-scores, axis=1, kind="stable")[:, :k], True, axis=1)
    tp = (pred & truth).sum(axis=1)
    f1 = 2 * tp / (pred.sum(axis=1) + truth.sum(axis=1))
    return {"p@1": float(p1), "map": float(np.nanmean(average_precision(scores, truth))),
            f"f1@{k}": float(f1.mean())}


def prior_scores(truth: np.ndarray, n_rows: int) -> np.ndarray:
    """The prior baseline's scores: every row ranks genres by catalogue frequency [n, G]."""
    freq = truth.sum(axis=0).astype(np.float64)
    # break frequency ties by name order so the baseline ranking is strict
    freq = freq - np.arange(len(freq)) * 1e-9
    return np.broadcast_to(freq, (n_rows, len(freq))).copy()


def dominant_genre(lists: list[list[str]], truth: np.ndarray, names: list[str]) -> list[str]:
    """The most specific genre of each item: its genre carried by the fewest items
    ("Animation" for "Animation|Children's|Comedy"); "none" without genres."""
    freq = dict(zip(names, truth.sum(axis=0).tolist(), strict=True))
    return [min(gs, key=lambda g: (freq[g], g)) if gs else "none" for gs in lists]
