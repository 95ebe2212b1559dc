"""Study 2, keyword overlap: are the descriptors words of the entity's profile?

A profile's words are its lowercase alphabetic tokens of at least ``min_len`` letters that
are not closed-class words (:data:`facelib.text.vocabulary.FUNCTION_WORDS`). Per entity:

- ``keyword_share``: share of its C descriptors that occur in the profile, a match being
  the same lowercase word or a shared lemma (lemminflect, every part of speech:
  "movies" -> "movie", "children" -> "child");
- ``synonym_share``: share that occur *or* are near synonyms: the word's sentence
  embedding (the word encoded alone by the frozen encoder) has cosine >= ``threshold``
  with that of some profile word;
- ``any_keyword``: 1 when at least one descriptor occurs in the profile.

Each is averaged over the sampled entities.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np

from facelib.text.vocabulary import FUNCTION_WORDS

TOKEN = re.compile(r"[a-z]+")


@functools.lru_cache(maxsize=200_000)
def lemma_forms(word: str) -> frozenset[str]:
    """The word and all its lemmas under every part of speech (lemminflect)."""
    import lemminflect

    forms = {word}
    for lemmas in lemminflect.getAllLemmas(word).values():
        forms.update(lemmas)
    return frozenset(forms)


def profile_words(text: str, min_len: int = 3) -> list[str]:
    """Distinct content tokens of ``text`` in first-occurrence order."""
    seen: dict[str, None] = {}
    for tok in TOKEN.findall(text.lower()):
        if len(tok) >= min_len and tok not in FUNCTION_WORDS:
            seen.setdefault(tok, None)
    return list(seen)


def lemma_set(tokens: Iterable[str]) -> set[str]:
    """Union of the lemma forms of ``tokens``."""
    out: set[str] = set()
    for tok in tokens:
        out |= lemma_forms(tok)
    return out


@dataclass
class ProfileKeywords:
    """The content words of a set of profiles, ready to score descriptor sets against.

    ``tokens[e]`` are profile ``e``'s words, ``lemmas[e]`` their lemma forms, ``rows[e]``
    the rows of those words in the word-embedding table handed to :meth:`shares`.
    """

    tokens: list[list[str]]
    lemmas: list[set[str]]
    rows: list[np.ndarray]

    @classmethod
    def from_texts(cls, texts: list[str], word_row: dict[str, int],
                   min_len: int = 3) -> ProfileKeywords:
        """``word_row`` maps every word of :func:`needed_words` to its embedding row."""
        tokens = [profile_words(t, min_len) for t in texts]
        return cls(tokens=tokens, lemmas=[lemma_set(t) for t in tokens],
                   rows=[np.array([word_row[w] for w in t], dtype=np.int64) for t in tokens])

    def exact(self, desc_words: list[list[str]]) -> np.ndarray:
        """[M, C] bool: descriptor c of entity e occurs (word or lemma) in profile e."""
        return np.array([[bool(lemma_forms(w) & self.lemmas[e]) for w in ws]
                         for e, ws in enumerate(desc_words)], dtype=bool).reshape(
                             len(desc_words), -1)

    def near(self, desc_rows: np.ndarray, word_emb: np.ndarray, threshold: float) -> np.ndarray:
        """[M, C] bool: descriptor c of entity e has cosine >= ``threshold`` with some word
        of profile e (``desc_rows`` [M, C] rows of ``word_emb`` [W, d], unit norm)."""
        out = np.zeros(desc_rows.shape, dtype=bool)
        for e, rows in enumerate(self.rows):
            if len(rows):
                sim = word_emb[desc_rows[e]] @ word_emb[rows].T  # [C, |profile|]
                out[e] = sim.max(axis=1) >= threshold
        return out

    def shares(self, desc_words: list[list[str]], desc_rows: np.ndarray,
               word_emb: np.ndarray, threshold: float) -> dict[str, float]:
        """keyword_share, synonym_share and any_keyword (module docstring)."""
        exact = self.exact(desc_words)
        near = exact | self.near(desc_rows, word_emb, threshold)
        return {"keyword_share": float(exact.mean()), "synonym_share": float(near.mean()),
                "any_keyword": float(exact.any(axis=1).mean())}


def needed_words(texts: list[str], min_len: int = 3) -> list[str]:
    """Sorted distinct content words of ``texts`` (to embed once)."""
    return sorted({w for t in texts for w in profile_words(t, min_len)})
