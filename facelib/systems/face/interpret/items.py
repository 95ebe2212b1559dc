"""Studies 6 and 7: which item do an item's descriptors point to, on their own?

**Item retrieval** (the paper's protocol, with a different judge). An item's C descriptor
words, in FACE's prompt sentence ("The movie attracts those who can be described as the
following words: w1, w2, ..."), are shown beside N candidate items: the true item and
N - 1 others drawn uniformly without replacement (seeded by (seed, N), so every variant,
backbone and seed gets the same candidates). A judge picks one candidate::

    acc@N = mean(chosen == true)                 chance = 1 / N

The judge is an :class:`ItemJudge`. The default, :class:`EncoderJudge`, is the frozen
sentence encoder, **not** a generative LLM: it picks the candidate whose text
("title (year); genres", or the item profile when the dataset has no titles) has the
highest cosine with the descriptor sentence. The paper asks an LLM instead (reported: the
true item among 10 more than 60% of the time); a local LLM can be plugged in through the
same interface.

**Item generation** (FACE's own decoder). The descriptor words k [M, C] are decoded back
to the CF space and rank the true item among all I items by the backbone's score::

    z     = E_hat[k]                  [M, C, D]   E_hat = quantizer.codebook()
    x_hat = head(Enc_2(z))            [M, d]      FACE.decode_words
    s     = x_hat E_items^T           [M, I]      fine-tuned item embeddings of the same run
    rank  = #{j : s_j >= s_true}      (ties count against the item)
    hit@10 = mean(rank <= 10)         chance 10 / I
    MRR    = mean(1 / rank)           chance (1/I) sum_{r=1..I} 1/r

FACE was trained to reconstruct these very item embeddings (every item is a positive or
negative of training batches), so item generation measures how much of an item's identity
survives the C words through FACE's own decoder, in sample: it is not a held-out result.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import numpy as np
import pandas as pd

from facelib.systems.face.interpret.genres import genre_lists
from facelib.systems.face.interpret.params import InterpretError
from facelib.systems.face.interpret.retrieval import chance_metrics, own_ranks, rank_metrics

GENERATION_KS = (10,)


@runtime_checkable
class ItemJudge(Protocol):
    """Picks, for each descriptor text, one of its candidate item texts.

    ``name`` is recorded in the metrics. ``choose(descriptor_texts [M], candidate_texts
    [M][N])`` returns the chosen candidate position of each row, int64 [M] in [0, N).
    """

    name: str

    def choose(self, descriptor_texts: Sequence[str],
               candidate_texts: Sequence[Sequence[str]]) -> np.ndarray: ...


def _unit(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float32)
    return x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), 1e-12)


@dataclass
class EncoderJudge:
    """The default judge: the frozen sentence encoder, cosine similarity, highest wins.

    ``embed(texts) -> [len(texts), d]`` embeds texts (the stage passes the run's cached
    sentence encoder, so each distinct text is encoded once). For row m::

        chosen[m] = argmax_j cos(embed(descriptor_m), embed(candidate_mj))

    ties go to the first candidate (the true item sits at a random position).
    """

    embed: Callable[[list[str]], np.ndarray]
    name: str = "frozen sentence encoder (cosine)"
    chunk: int = 1024

    def choose(self, descriptor_texts: Sequence[str],
               candidate_texts: Sequence[Sequence[str]]) -> np.ndarray:
        m = len(descriptor_texts)
        if len(candidate_texts) != m:
            raise ValueError(f"{m} descriptor texts but {len(candidate_texts)} candidate "
                             f"rows: pass one candidate list per descriptor text")
        if m == 0:
            return np.empty(0, dtype=np.int64)
        widths = {len(row) for row in candidate_texts}
        if len(widths) != 1 or 0 in widths:
            raise ValueError(f"candidate rows have lengths {sorted(widths)}: pass the same "
                             f"number N >= 1 of candidates in every row")
        (n,) = widths
        queries = _unit(self.embed(list(descriptor_texts)))  # [M, d]
        uniq, inverse = np.unique(np.array([t for row in candidate_texts for t in row],
                                           dtype=object), return_inverse=True)
        cands = _unit(self.embed([str(t) for t in uniq]))  # [U, d]
        inverse = inverse.reshape(m, n)
        out = np.empty(m, dtype=np.int64)
        for s in range(0, m, self.chunk):
            scores = queries[s:s + self.chunk] @ cands.T  # [b, U]
            out[s:s + self.chunk] = np.take_along_axis(
                scores, inverse[s:s + self.chunk], axis=1).argmax(axis=1)  # [b, N] -> [b]
        return out


def item_texts(items: pd.DataFrame, profiles: Sequence[str]) -> tuple[list[str], str]:
    """Each item's candidate text and where it comes from.

    "title (year); genre, genre" when ``items`` has a ``title`` column (year and genres
    when present and known), else the item profile text. Returns (texts [I], source).
    """
    if "title" not in items.columns:
        return [str(t) for t in profiles], "profile"
    years = items["year"] if "year" in items.columns else pd.Series([None] * len(items))
    genres = genre_lists(items) or [[] for _ in range(len(items))]
    out = []
    for title, year, gs in zip(items["title"].astype(str), years, genres, strict=True):
        text = title if year is None or pd.isna(year) else f"{title} ({int(year)})"
        out.append(f"{text}; {', '.join(gs)}" if gs else text)
    return out, "title (year); genres"


def candidate_sets(items: np.ndarray, n_items: int, n: int,
                   rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """N candidates per item: the item itself and N - 1 others, uniformly without
    replacement, the item at a uniform position.

    ``items`` [M] item ids in [0, n_items) -> (candidates [M, N] int64 item ids, distinct
    per row; truth [M] int64, the position of the item in its row).
    """
    items = np.asarray(items, dtype=np.int64)
    if not 2 <= n <= n_items:
        raise InterpretError(f"item retrieval asks for {n} candidates but there are "
                             f"{n_items} items; set interpret.retrieval_candidates to values "
                             f"in [2, {n_items}]")
    truth = rng.integers(0, n, size=len(items))
    out = np.empty((len(items), n), dtype=np.int64)
    for r, item in enumerate(items):
        others = rng.choice(n_items - 1, n - 1, replace=False)
        others += others >= item  # skip the item itself
        out[r] = np.insert(others, truth[r], item)
    return out, truth


def retrieval_accuracy(chosen: np.ndarray, truth: np.ndarray) -> float:
    """Share of rows whose chosen position is the true item's."""
    chosen, truth = np.asarray(chosen), np.asarray(truth)
    if chosen.shape != truth.shape:
        raise ValueError(f"{chosen.shape} choices for {truth.shape} questions")
    return float(np.mean(chosen == truth))


def retrieval_chance(ns: Sequence[int]) -> dict[str, float]:
    """Chance accuracy 1/N of each ``acc@N``."""
    return {f"acc@{n}": 1.0 / n for n in ns}


def generation_metrics(x_hat: np.ndarray, item_emb: np.ndarray,
                       items: np.ndarray) -> dict[str, float]:
    """hit@10, MRR and median rank of each true item among all items.

    ``x_hat`` [M, d] decoded descriptors, ``item_emb`` [I, d] the backbone's item
    embeddings, ``items`` [M] the true item ids; scores are dot products (the backbone's
    own scoring), ties count against the item.
    """
    ranks, _, _ = own_ranks(x_hat, item_emb, items)
    return rank_metrics(ranks, GENERATION_KS)


def generation_chance(n_items: int) -> dict[str, float]:
    """hit@10 and MRR of a uniformly random ranking of ``n_items`` items."""
    return chance_metrics(n_items, GENERATION_KS)
