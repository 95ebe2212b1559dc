"""Most-popular baseline: every user gets the items ranked by training popularity.

    ŷ(u, i) = |{v : (v, i) ∈ train}|

It is the sanity floor of the evaluation: a CF model that does not beat it has learnt
nothing personal. Expressed as 1-d "embeddings" (e_u = 1, e_i = popularity) so it runs
through the same evaluator as the backbones.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp
import torch
from torch import Tensor


class MostPopular:
    """Scores = training interaction counts per item (no parameters, no training)."""

    name = "most_popular"

    def __init__(self, train_matrix: sp.spmatrix) -> None:
        m = sp.csr_matrix(train_matrix)
        self.n_users, self.n_items = m.shape
        counts = np.asarray((m != 0).sum(axis=0), dtype=np.float32).ravel()  # [I]
        self.popularity = torch.from_numpy(counts)

    def embeddings_for_eval(self) -> tuple[Tensor, Tensor]:
        """(ones [U, 1], popularity [I, 1]): their dot product is the popularity."""
        return torch.ones(self.n_users, 1), self.popularity[:, None]

    def score(self, users: Tensor) -> Tensor:
        """[B, I] popularity of every item, the same row for every user."""
        return self.popularity[None, :].expand(len(users), -1)
