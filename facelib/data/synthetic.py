"""A small synthetic MovieLens-like dataset for fast tests and smoke-size notebooks.

Users and items get latent genre mixtures; a user rates an item high when their genres
match, with a popularity tilt, so CF models have real structure to learn. The output has
the same columns as :func:`facelib.data.movielens.read_movielens`.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from facelib.data.movielens import AGE_BANDS_ML1M, OCCUPATIONS_ML1M, RawTables

GENRES = ("Action", "Comedy", "Drama", "Romance", "Horror", "Sci-Fi", "Animation", "Documentary")
_WORDS = ("Night", "River", "Star", "Heart", "Shadow", "City", "Dream", "Storm", "Garden",
          "Secret", "Winter", "Fire", "Ocean", "Ghost", "King", "Road", "Light", "Stone")


def make_synthetic(
    n_users: int = 300,
    n_items: int = 200,
    ratings_per_user: int = 40,
    n_genres: int = 6,
    seed: int = 0,
) -> RawTables:
    """Generate users, items and 1-5 star ratings with genre structure.

    Each user rates ``ratings_per_user`` items drawn by affinity x popularity; the rating is
    4-5 for items of the user's favourite genres and lower otherwise (with noise).
    """
    if min(n_users, n_items, ratings_per_user, n_genres) < 1:
        raise ValueError("n_users, n_items, ratings_per_user and n_genres must be >= 1")
    if ratings_per_user > n_items:
        raise ValueError(f"ratings_per_user ({ratings_per_user}) exceeds n_items ({n_items})")
    n_genres = min(n_genres, len(GENRES))
    rng = np.random.default_rng(seed)

    item_genre = rng.dirichlet(np.full(n_genres, 0.3), size=n_items)  # [I, G]
    user_genre = rng.dirichlet(np.full(n_genres, 0.3), size=n_users)  # [U, G]
    popularity = rng.pareto(1.5, size=n_items) + 1.0

    affinity = user_genre @ item_genre.T  # [U, I]
    users_col, items_col, ratings_col = [], [], []
    for u in range(n_users):
        p = (affinity[u] + 0.05) * popularity
        chosen = rng.choice(n_items, size=ratings_per_user, replace=False, p=p / p.sum())
        score = affinity[u, chosen] / affinity[u].max()
        stars = np.clip(np.rint(1.5 + 3.5 * score + rng.normal(0, 0.6, len(chosen))), 1, 5)
        users_col += [str(u + 1)] * len(chosen)
        items_col += [str(i + 1) for i in chosen]
        ratings_col += stars.tolist()
    ratings = pd.DataFrame({
        "user": users_col, "item": items_col, "rating": np.asarray(ratings_col, float),
        "timestamp": rng.integers(9e8, 1e9, len(users_col)),
    })

    top_genres = [
        "|".join(GENRES[g] for g in np.argsort(-row)[: 1 + int(row.max() < 0.7)])
        for row in item_genre
    ]
    titles = [f"The {rng.choice(_WORDS)} of {rng.choice(_WORDS)} {i + 1}" for i in range(n_items)]
    items = pd.DataFrame({
        "raw_id": [str(i + 1) for i in range(n_items)],
        "title": titles,
        "year": rng.integers(1950, 2001, n_items),
        "genres": top_genres,
    })
    bands = list(AGE_BANDS_ML1M.values())
    users = pd.DataFrame({
        "raw_id": [str(u + 1) for u in range(n_users)],
        "age": rng.choice(bands, n_users),
        "gender": rng.choice(["female", "male"], n_users),
        "occupation": rng.choice(OCCUPATIONS_ML1M, n_users),
    })
    return RawTables(users=users, items=items, ratings=ratings)
