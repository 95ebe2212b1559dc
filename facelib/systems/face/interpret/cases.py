"""Study 5, case studies: descriptors beside what we know of a few users and items, and a
t-SNE map of the item CF embeddings coloured by genre with a few descriptors placed on it.

- users: titles liked in training (a seeded sample), the profile, each variant's words;
- items: title, genres, the profile, each variant's words;
- the map: t-SNE (scikit-learn) of the FACE align checkpoint's item embeddings (the
  backbone's fine-tuned embeddings, ``backbone.embeddings_for_eval()``), each item coloured
  by its most specific genre; k-means on the 2-D map picks a few items spread over it,
  labelled with their title and first descriptors.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from facelib.data import RecDataset
from facelib.systems.face.interpret.descriptors import Descriptors, join_words
from facelib.systems.face.interpret.genres import dominant_genre, genre_lists, genre_matrix, genre_names

MAX_COLOURS = 10  # genres with their own colour on the map; the rest are "other"


def titles(ds: RecDataset) -> pd.Series:
    """Item titles (the raw id where the dataset has no title)."""
    col = "title" if "title" in ds.items.columns else "raw_id"
    return ds.items[col].astype(str)


def liked_items(liked: np.ndarray, n: int, seed: int, user: int) -> np.ndarray:
    """Up to ``n`` of a user's training items, a sample seeded by (seed, user), sorted."""
    if len(liked) <= n:
        return np.asarray(liked)
    return np.sort(np.random.default_rng([seed, user]).choice(liked, n, replace=False))


def user_cases(ds: RecDataset, profiles: list[str], sets: dict[str, Descriptors],
               words: np.ndarray, users: list[int], n_titles: int = 5,
               seed: int = 0) -> pd.DataFrame:
    """One row per user: liked titles, profile and the words of each set (column = key)."""
    liked = ds.user_items("train")
    names = titles(ds)
    rows = {"liked (training)": [
        "; ".join(names.iloc[liked_items(liked[u], n_titles, seed, u)]) for u in users],
        "profile": [profiles[u] for u in users]}
    for label, d in sets.items():
        rows[label] = [join_words(words, d["user"][u]) for u in users]
    return pd.DataFrame(rows, index=pd.Index(users, name="user"))


def item_cases(ds: RecDataset, profiles: list[str], sets: dict[str, Descriptors],
               words: np.ndarray, items: list[int]) -> pd.DataFrame:
    """One row per item: title, genres (when known), profile and each set's words."""
    rows: dict[str, list[Any]] = {"title": list(titles(ds).iloc[items])}
    if "genres" in ds.items.columns:
        rows["genres"] = [str(g).replace("|", ", ") for g in ds.items["genres"].iloc[items]]
    rows["profile"] = [profiles[i] for i in items]
    for label, d in sets.items():
        rows[label] = [join_words(words, d["item"][i]) for i in items]
    return pd.DataFrame(rows, index=pd.Index(items, name="item"))


def dominant_genre_labels(ds: RecDataset) -> list[str]:
    """Each item's most specific genre (:func:`~facelib.systems.face.interpret.genres.dominant_genre`);
    "all" when the dataset has no genres."""
    lists = genre_lists(ds.items)
    if lists is None:
        return ["all"] * ds.n_items
    names = genre_names(lists)
    return dominant_genre(lists, genre_matrix(lists, names), names)


def tsne_coords(emb: np.ndarray, seed: int = 0) -> np.ndarray:
    """2-D t-SNE of ``emb`` [N, d] (cosine distances, PCA init, perplexity <= 30)."""
    from sklearn.manifold import TSNE

    n = len(emb)
    if n < 4:
        raise ValueError(f"t-SNE needs at least 4 points, got {n}")
    perplexity = float(min(30.0, (n - 1) / 3))
    return TSNE(n_components=2, perplexity=perplexity, metric="cosine", init="pca",
                random_state=seed).fit_transform(np.asarray(emb, dtype=np.float32))


def spread_points(coords: np.ndarray, k: int, seed: int = 0) -> np.ndarray:
    """Indices of ``k`` points spread over the map: the point nearest each k-means centre."""
    from sklearn.cluster import KMeans

    k = min(k, len(coords))
    km = KMeans(n_clusters=k, n_init=4, random_state=seed).fit(coords)
    d = ((coords[:, None, :] - km.cluster_centers_[None]) ** 2).sum(axis=2)  # [N, k]
    return np.unique(d.argmin(axis=0))


def colour_groups(groups: list[str], max_colours: int = MAX_COLOURS) -> list[str]:
    """Keep the ``max_colours`` most common groups, fold the rest into "other"."""
    keep = set(pd.Series(groups).value_counts().index[:max_colours])
    return [g if g in keep else "other" for g in groups]


def tsne_figure(coords: np.ndarray, groups: list[str], labels: dict[int, str],
                title: str) -> Any:
    """Scatter of ``coords`` [N, 2] coloured by ``groups``, with ``labels`` {row: text}."""
    import matplotlib.pyplot as plt

    groups = colour_groups(groups)
    order = [g for g in pd.Series(groups).value_counts().index if g != "other"]
    order += ["other"] if "other" in groups else []
    palette = [c for j, c in enumerate(plt.get_cmap("tab10").colors) if j != 7] + ["navy"]
    fig, ax = plt.subplots(figsize=(10, 8))
    arr = np.array(groups)
    for j, g in enumerate(order):
        m = arr == g
        colour = "lightgrey" if g == "other" else palette[j % len(palette)]
        ax.scatter(coords[m, 0], coords[m, 1], s=7, alpha=0.7, color=colour,
                   label=f"{g} ({m.sum()})", linewidths=0)
    for row, text in labels.items():
        ax.annotate(text, coords[row], fontsize=7.5, xytext=(4, 4), textcoords="offset points",
                    bbox={"boxstyle": "round,pad=0.2", "fc": "white", "alpha": 0.8, "lw": 0.3})
        ax.scatter(*coords[row], s=25, color="black", marker="x")
    ax.set_xticks([])
    ax.set_yticks([])
    ax.set_title(title)
    ax.legend(title="most specific genre", loc="center left", bbox_to_anchor=(1.0, 0.5),
              fontsize=8, markerscale=2, frameon=False)
    fig.tight_layout()
    return fig


def point_label(title: str, words: str, n_words: int = 3, width: int = 28) -> str:
    """"Title\\nw1, w2, w3" with the title cut to ``width`` characters."""
    short = title if len(title) <= width else title[:width - 1] + "…"
    return short + "\n" + ", ".join(words.split(", ")[:n_words])
