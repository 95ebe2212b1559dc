"""User and item profiles: the texts FACE aligns collaborative embeddings with.

FACE uses RLMRec's LLM-written profiles (what a user likes, whom an item attracts). No
generative LLM is available offline, so the default :class:`TemplateProfileBuilder` writes
honest template profiles from metadata and the **training split only** (``ds.train``;
validation and test interactions never reach a profile):

- item: title, year, genres, how many liked it in training and who (gender share, most
  common age band and occupation of that audience), titles its fans also liked;
- user: demographics, number of liked items, favourite genres and decades, two liked
  titles.

:class:`GivenProfileBuilder` returns the profiles shipped with an RLMRec-format dataset;
:class:`GeneratedProfileBuilder` hands the same train-only facts to any local generative
LLM. Every :class:`Profiles` records the builder that made it, and results say so.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import numpy as np
import pandas as pd
import scipy.sparse as sp

from facelib.data.dataset import RecDataset
from facelib.data.errors import DataError

BUILDERS = ("auto", "template", "given")
AUDIENCE_NOUNS = {"movie": "viewer", "book": "reader", "restaurant": "customer",
                  "game": "player"}
UNINFORMATIVE = {"", "other", "unknown", "none", "nan"}


@dataclass
class Profiles:
    """One profile text per user id and per item id, and the builder that wrote them."""

    user: list[str]
    item: list[str]
    builder: str


@runtime_checkable
class ProfileBuilder(Protocol):
    """Anything that writes :class:`Profiles` for a dataset."""

    name: str

    def build(self, ds: RecDataset) -> Profiles: ...


# ---------------------------------------------------------------------- helpers
def _plural(noun: str) -> str:
    return noun if noun.endswith("s") else noun + "s"


def _count(n: int, noun: str) -> str:
    """``3, "movie"`` -> ``"3 movies"``; ``1, "movie"`` -> ``"1 movie"``."""
    return f"{n} {noun if n == 1 else _plural(noun)}"


def _join(words: list[str]) -> str:
    """``["a", "b", "c"]`` -> ``"a, b and c"``."""
    return words[0] if len(words) == 1 else ", ".join(words[:-1]) + " and " + words[-1]


def _column(df: pd.DataFrame, name: str) -> list[str] | None:
    """A side-table column as clean strings, or None when absent or all uninformative."""
    if name not in df.columns:
        return None
    values = ["" if pd.isna(v) else str(v).strip() for v in df[name]]
    return values if any(v.lower() not in UNINFORMATIVE for v in values) else None


def _one_hot(labels: list[list[str]]) -> tuple[sp.csr_matrix, list[str]]:
    """Multi-label one-hot [n, K] float32 CSR and the K label names (sorted)."""
    names = sorted({x for row in labels for x in row})
    index = {n: k for k, n in enumerate(names)}
    rows = np.repeat(np.arange(len(labels)), [len(r) for r in labels])
    cols = np.array([index[x] for row in labels for x in row], dtype=np.int64)
    m = sp.csr_matrix((np.ones(len(cols), np.float32), (rows, cols)),
                      shape=(len(labels), len(names)))
    return m, names


def _top(counts: np.ndarray, k: int, names: list[str]) -> list[str]:
    """Names of the ``k`` largest positive counts (ties: name order), uninformative
    labels ("other", "") skipped."""
    order = np.argsort(-counts, kind="stable")
    return [names[j] for j in order
            if counts[j] > 0 and names[j].lower() not in UNINFORMATIVE][:k]


def top_coliked(r: sp.csr_matrix, k: int, min_count: int = 2, block: int = 512
                ) -> list[np.ndarray]:
    """Per item, up to ``k`` items most often liked by the same users.

    ``r`` is the binary training matrix [U, I]. Co-likes ``C = RᵀR`` are computed in row
    blocks (memory [block, I]); items are ranked by cosine ``C_ij / sqrt(n_i n_j)`` among
    those with ``C_ij >= min_count``. Returns one int array per item, best first.
    """
    rt = r.T.tocsr()  # [I, U]
    pop = np.asarray(r.sum(axis=0)).ravel().astype(np.float32)  # [I]
    n_items = r.shape[1]
    out: list[np.ndarray] = []
    for s in range(0, n_items, block):
        rows = np.arange(s, min(s + block, n_items))
        c = (rt[rows] @ r).toarray()  # [b, I] co-like counts
        c[np.arange(len(rows)), rows] = 0.0
        score = c / np.sqrt(np.maximum(pop[rows, None] * pop[None, :], 1.0))
        score[c < min_count] = 0.0
        kk = min(k, n_items - 1)
        cand = np.argpartition(-score, kk, axis=1)[:, :kk] if kk > 0 else np.zeros(
            (len(rows), 0), dtype=np.int64)  # [b, k]
        for j in range(len(rows)):
            picked = cand[j][np.argsort(-score[j, cand[j]], kind="stable")]
            out.append(picked[score[j, picked] > 0])
    return out


# ---------------------------------------------------------------------- builders
@dataclass
class TemplateProfileBuilder:
    """Readable template profiles from metadata and training interactions only.

    Short by design (30-60 WordPiece tokens, ~43 on MovieLens-1M) because the encoder's
    cost grows linearly with length (ML-1M: ~4e5 tokens, minutes on 2 cores). Columns a
    dataset lacks (title, year, genres, age, gender, occupation) are left out of the
    sentences; an item without a title is called "<noun> <raw id>".
    """

    n_examples: int = 2  # liked titles quoted in a user profile
    n_coliked: int = 2  # co-liked titles quoted in an item profile
    min_support: int = 5  # example titles are liked by at least this many users (if any)
    name: str = "template"

    def build(self, ds: RecDataset) -> Profiles:
        r = ds.matrix("train")  # [U, I] binary, training split only
        noun = ds.item_noun or "item"
        titles = _column(ds.items, "title") or [f"{noun} {x}" for x in ds.items["raw_id"]]
        years = (pd.to_numeric(ds.items["year"], errors="coerce").fillna(0).astype(int)
                 .to_numpy() if "year" in ds.items.columns else np.zeros(ds.n_items, int))
        genre_col = _column(ds.items, "genres")
        genres = [[g for g in str(x).split("|") if g] for x in genre_col] if genre_col else \
            [[] for _ in range(ds.n_items)]
        return Profiles(user=self._users(ds, r, titles, years, genres),
                        item=self._items(ds, r, titles, years, genres), builder=self.name)

    def _items(self, ds: RecDataset, r: sp.csr_matrix, titles: list[str], years: np.ndarray,
               genres: list[list[str]]) -> list[str]:
        who = AUDIENCE_NOUNS.get(ds.item_noun, "user")
        pop = np.asarray(r.sum(axis=0)).ravel().astype(int)  # [I]
        audience: dict[str, tuple[np.ndarray, list[str]]] = {}  # col -> [I, K] counts, names
        for col in ("gender", "age", "occupation"):
            values = _column(ds.users, col)
            if values is not None:
                onehot, names = _one_hot([[v] for v in values])  # [U, K]
                audience[col] = (np.asarray((r.T @ onehot).todense()), names)  # [I, K]
        coliked = top_coliked(r, self.n_coliked)
        texts = []
        for i in range(ds.n_items):
            head = titles[i] + (f" ({years[i]})" if years[i] > 0 else "")
            if genres[i]:
                head += ", " + ", ".join(genres[i])
            parts = [head + ".", f"Liked by {_count(pop[i], who)}"]
            if "gender" in audience:
                counts, names = audience["gender"]
                top = _top(counts[i], 1, names)
                if top:
                    share = counts[i, names.index(top[0])] / pop[i]
                    parts[-1] += f", {round(100 * share)}% {top[0]}"
            if "age" in audience:
                top = _top(audience["age"][0][i], 1, audience["age"][1])
                parts[-1] += f", mostly aged {top[0]}" if top else ""
            if "occupation" in audience:
                top = _top(audience["occupation"][0][i], 1, audience["occupation"][1])
                parts[-1] += f", often {top[0]}" if top else ""
            parts[-1] += "."
            if len(coliked[i]):
                parts.append("Fans also liked " + _join([titles[j] for j in coliked[i]]) + ".")
            texts.append(" ".join(parts))
        return texts

    def _users(self, ds: RecDataset, r: sp.csr_matrix, titles: list[str], years: np.ndarray,
               genres: list[list[str]]) -> list[str]:
        noun = ds.item_noun or "item"
        pop = np.asarray(r.sum(axis=0)).ravel()  # [I]
        g_onehot, g_names = _one_hot(genres)  # [I, G]
        g_counts = np.asarray((r @ g_onehot).todense())  # [U, G]
        decade_labels = [[f"{y // 10 * 10}s"] if y > 0 else [] for y in years]
        d_onehot, d_names = _one_hot(decade_labels)  # [I, D]
        d_counts = np.asarray((r @ d_onehot).todense())  # [U, D]
        gender, age, occupation = (_column(ds.users, c) for c in ("gender", "age", "occupation"))
        person = AUDIENCE_NOUNS.get(ds.item_noun, "user")
        texts = []
        for u in range(ds.n_users):
            liked = r.indices[r.indptr[u]:r.indptr[u + 1]]
            desc = "A"
            if gender and gender[u].lower() not in UNINFORMATIVE:
                desc += f" {gender[u]}"
            desc += f" {person}"
            if age and age[u].lower() not in UNINFORMATIVE:
                desc += f" aged {age[u]}"
            if occupation and occupation[u].lower() not in UNINFORMATIVE:
                desc += f", {occupation[u]}"
            taste = f"Liked {_count(len(liked), noun)}"
            fav = _top(g_counts[u], 3, g_names)
            if fav:
                taste += f", mostly {_join(fav)}"
            major = np.where(d_counts[u] >= d_counts[u].sum() / 3, d_counts[u], 0)
            eras = _top(major, 2, d_names)  # decades holding >= 1/3 of the liked items
            if eras:
                taste += f", from the {_join(eras)}"
            parts = [desc + ".", taste + "."]
            examples = self._examples(liked, pop)
            if len(examples):
                parts.append("For example " + _join([titles[j] for j in examples]) + ".")
            texts.append(" ".join(parts))
        return texts

    def _examples(self, liked: np.ndarray, pop: np.ndarray) -> np.ndarray:
        """Distinctive yet known titles: the least popular of the liked items that at
        least ``min_support`` users liked, then the most popular of the rest."""
        known = liked[pop[liked] >= self.min_support]
        known = known[np.argsort(pop[known], kind="stable")]
        rest = liked[pop[liked] < self.min_support]
        rest = rest[np.argsort(-pop[rest], kind="stable")]
        return np.concatenate([known, rest])[: self.n_examples]


@dataclass
class GivenProfileBuilder:
    """The profiles shipped with the dataset (RLMRec release: LLM-written, ``profile``
    field), for datasets whose items have no metadata beyond ids."""

    name: str = "rlmrec-given"

    def build(self, ds: RecDataset) -> Profiles:
        given = ds.profiles
        if not given:
            raise DataError(f"dataset {ds.name} has no given profiles; set text.builder to "
                            f"template (or auto)")
        user, item = list(given.get("user", [])), list(given.get("item", []))
        if len(user) != ds.n_users or len(item) != ds.n_items:
            raise DataError(f"dataset {ds.name}: {len(user)} user / {len(item)} item profiles "
                            f"for {ds.n_users} users / {ds.n_items} items; run the data "
                            f"stage again")
        return Profiles(user=user, item=item, builder=self.name)


class GeneratedProfileBuilder:
    """Profiles written by a local generative LLM from the template's train-only facts.

    ``generate(prompts) -> texts`` is any callable (e.g. a ``transformers`` text-generation
    pipeline on a GPU machine). facelib ships no LLM weights and never downloads any, so
    this backend is exercised only by tests, with a fake callable; the pipeline's default
    is the template builder.
    """

    USER_PROMPT = ("Facts about a user of a {noun} recommender, from their training "
                   "history: {facts}\nIn two or three sentences, describe what this user "
                   "likes. Use only these facts.")
    ITEM_PROMPT = ("Facts about a {noun}, from its metadata and the users who liked it in "
                   "training: {facts}\nIn two or three sentences, describe the users this "
                   "{noun} attracts. Use only these facts.")

    def __init__(self, generate: Callable[[list[str]], list[str]], name: str = "generated",
                 batch_size: int = 32, facts: ProfileBuilder | None = None) -> None:
        self.generate = generate
        self.name = name
        self.batch_size = batch_size
        self.facts = facts or TemplateProfileBuilder()

    def prompts(self, ds: RecDataset) -> tuple[list[str], list[str]]:
        """The user and item prompts, one per id, built from train-only facts."""
        facts = self.facts.build(ds)
        noun = ds.item_noun or "item"
        return ([self.USER_PROMPT.format(noun=noun, facts=f) for f in facts.user],
                [self.ITEM_PROMPT.format(noun=noun, facts=f) for f in facts.item])

    def _run(self, prompts: list[str]) -> list[str]:
        out: list[str] = []
        for s in range(0, len(prompts), self.batch_size):
            chunk = prompts[s:s + self.batch_size]
            texts = list(self.generate(chunk))
            if len(texts) != len(chunk) or not all(isinstance(t, str) and t.strip()
                                                   for t in texts):
                raise DataError(f"profile generator {self.name!r} returned {len(texts)} "
                                f"texts for {len(chunk)} prompts (or empty ones); fix the "
                                f"generate callable")
            out += [t.strip() for t in texts]
        return out

    def build(self, ds: RecDataset) -> Profiles:
        user_prompts, item_prompts = self.prompts(ds)
        return Profiles(user=self._run(user_prompts), item=self._run(item_prompts),
                        builder=self.name)


def select_builder(choice: str, ds: RecDataset) -> ProfileBuilder:
    """The builder named by ``text.builder``: ``auto`` takes the given profiles when the
    dataset has them, else templates."""
    if choice not in BUILDERS:
        raise DataError(f"unknown profile builder {choice!r}; choose one of "
                        f"{', '.join(BUILDERS)}")
    if choice == "given" or (choice == "auto" and ds.profiles):
        return GivenProfileBuilder()
    return TemplateProfileBuilder()
