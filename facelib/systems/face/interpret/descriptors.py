"""Descriptor sets of the four variants, as vocabulary indices, and their prompt sentences.

A descriptor set is ``{"user": [n_users, C], "item": [n_items, C]}`` of int64 indices into
the vocabulary (``data/text/<dataset>/vocabulary.csv``); row ``e`` holds entity ``e``'s C
words in concept order. The four variants:

- ``face``: FACE after align (``descriptors-<backbone>-<seed>.csv``);
- ``map``: the map stage alone, no text alignment (``...-map.csv``);
- ``random``: C distinct vocabulary words drawn uniformly per entity (seeded): the floor;
- ``nearest``: the C words whose sentence embeddings (each word encoded alone by the frozen
  encoder) are nearest by cosine to the entity's profile embedding, most similar first. It
  reads the profile, so it is an upper reference for what C words can say, not a method.

:func:`descriptor_sentences` writes the prompt FACE's align stage encodes (in embedding
space) as text; each vocabulary word is one WordPiece token, so the tokenizer gives the same
token sequence ``[CLS] P w1 , w2 , ... , wC [SEP]``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from facelib.systems.face.interpret.params import InterpretError
from facelib.systems.face.model.prompt import ITEM_PROMPT, USER_PROMPT

KINDS = ("user", "item")
VARIANTS = ("face", "map", "random", "nearest")
LABELS = {"face": "FACE (align)", "map": "map-only", "random": "random words",
          "nearest": "nearest words (reference)", "prior": "genre prior (baseline)",
          "profile": "profile text (reference)"}
COLUMNS = ("entity", "entity_id", "concept", "word")

Descriptors = dict[str, np.ndarray]  # kind -> [N, C] int64 vocabulary indices


def word_count(d: Descriptors) -> int:
    """C, the words per entity of a descriptor set."""
    return int(next(iter(d.values())).shape[1])


def table_to_indices(table: pd.DataFrame, word_index: dict[str, int], n: dict[str, int],
                     source: str = "descriptor table") -> Descriptors:
    """The face stage's table (entity, entity_id, concept, word; C rows per entity) as
    index matrices; raises :class:`InterpretError` when it does not fit ``n`` or the
    vocabulary."""
    missing = [c for c in COLUMNS if c not in table.columns]
    if missing:
        raise InterpretError(f"{source} lacks column(s) {', '.join(missing)}; rerun the face "
                             f"stage (dvc repro face)")
    if table.empty:
        raise InterpretError(f"{source} is empty; rerun the face stage (dvc repro face)")
    c = int(table["concept"].max()) + 1
    out: Descriptors = {}
    for kind in KINDS:
        part = table[table["entity"] == kind].sort_values(["entity_id", "concept"])
        ids, concepts = part["entity_id"].to_numpy(), part["concept"].to_numpy()
        if (len(part) != n[kind] * c or not np.array_equal(ids, np.repeat(np.arange(n[kind]), c))
                or not np.array_equal(concepts, np.tile(np.arange(c), n[kind]))):
            raise InterpretError(f"{source} does not hold {c} words for each of the "
                                 f"{n[kind]} {kind}s of the dataset; rerun the face stage "
                                 f"(dvc repro face)")
        idx = part["word"].astype(str).map(word_index)
        if idx.isna().any():
            bad = part["word"][idx.isna()].iloc[0]
            raise InterpretError(f"{source} uses {bad!r}, which is not in the vocabulary of "
                                 f"the text stage; rerun the face stage (dvc repro face)")
        out[kind] = idx.to_numpy(dtype=np.int64).reshape(n[kind], c)
    return out


def read_descriptors(path: Path, word_index: dict[str, int], n: dict[str, int]) -> Descriptors:
    """Read one descriptor CSV of the face stage (see :func:`table_to_indices`)."""
    try:
        table = pd.read_csv(path, keep_default_na=False, dtype={"word": str})
    except (OSError, ValueError) as exc:
        raise InterpretError(f"cannot read {path} ({type(exc).__name__}); rerun the face "
                             f"stage (dvc repro face)") from None
    return table_to_indices(table, word_index, n, source=str(path))


def random_descriptors(n: dict[str, int], vocab_size: int, c: int,
                       rng: np.random.Generator) -> Descriptors:
    """C distinct uniformly drawn vocabulary indices per entity."""
    if c > vocab_size:
        raise InterpretError(f"{c} words per entity but only {vocab_size} in the vocabulary")
    return {kind: np.stack([rng.choice(vocab_size, c, replace=False) for _ in range(n[kind])])
            .astype(np.int64).reshape(n[kind], c) for kind in KINDS}


def nearest_words(profile_emb: np.ndarray, word_emb: np.ndarray, c: int,
                  chunk: int = 2048) -> np.ndarray:
    """Indices of the ``c`` words most cosine-similar to each profile, best first.

    ``profile_emb`` [N, d] and ``word_emb`` [V, d] are unit-norm -> [N, c] int64.
    """
    out = np.empty((len(profile_emb), c), dtype=np.int64)
    for s in range(0, len(profile_emb), chunk):
        sim = profile_emb[s:s + chunk] @ word_emb.T  # [b, V]
        top = np.argpartition(-sim, c - 1, axis=1)[:, :c]  # [b, c] unordered
        order = np.argsort(-np.take_along_axis(sim, top, axis=1), axis=1, kind="stable")
        out[s:s + chunk] = np.take_along_axis(top, order, axis=1)
    return out


def nearest_descriptors(profile_emb: dict[str, np.ndarray], word_emb: np.ndarray,
                        c: int) -> Descriptors:
    """The nearest-words reference for every user and item (:func:`nearest_words`)."""
    return {kind: nearest_words(profile_emb[kind], word_emb, c) for kind in KINDS}


def sample_ids(n: int, max_entities: int, rng: np.random.Generator,
               pool: np.ndarray | None = None) -> np.ndarray:
    """Sorted ids of ``max_entities`` entities drawn without replacement from ``pool``
    (default: all ``n``; 0 or at least the pool's size: the whole pool)."""
    pool = np.arange(n) if pool is None else np.sort(np.asarray(pool, dtype=np.int64))
    if max_entities <= 0 or max_entities >= len(pool):
        return pool
    return np.sort(rng.choice(pool, max_entities, replace=False))


def held_out_ids(path: Path, part: str = "test") -> dict[str, np.ndarray] | None:
    """The ids of each entity type that the FACE run held out of its alignment as ``part``
    (the descriptor CSV's ``split`` column), or None when it aligned every entity."""
    table = pd.read_csv(path, keep_default_na=False, usecols=lambda c: c in (
        "entity", "entity_id", "split"))
    if "split" not in table or not (table["split"] == part).any():
        return None
    rows = table[table["split"] == part].drop_duplicates(["entity", "entity_id"])
    return {kind: np.sort(rows.loc[rows.entity == kind, "entity_id"].to_numpy(np.int64))
            for kind in KINDS}


def prompt_text(kind: str, noun: str = "movie") -> str:
    """The FACE prompt before the words: P_user, or P_item with the dataset's item noun."""
    return USER_PROMPT if kind == "user" else ITEM_PROMPT.format(noun=noun)


def descriptor_sentences(words: np.ndarray, idx: np.ndarray, kind: str,
                         noun: str = "movie") -> list[str]:
    """"<prompt> w1, w2, ..., wC" for each row of ``idx`` [M, C] (``words`` [V] str)."""
    prompt = prompt_text(kind, noun)
    return [f"{prompt} {', '.join(words[row])}" for row in idx]


def join_words(words: np.ndarray, row: np.ndarray) -> str:
    """One entity's descriptors as "w1, w2, ..."."""
    return ", ".join(words[row])
