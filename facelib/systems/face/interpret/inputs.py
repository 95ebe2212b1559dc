"""The inputs of the interpret stage, loaded and checked before the encoder starts, and the
one place descriptor sentences are encoded (each set and entity type once).

:class:`StudyInputs` holds the dataset, the text artifacts, the vocabulary and every
descriptor set keyed ``(backbone, seed, variant)``; the random and nearest-words variants
do not depend on the backbone (random depends on the seed), so the same arrays are shared
by every backbone and are encoded once.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from facelib import paths
from facelib.data import RecDataset, load_dataset
from facelib.systems.face.interpret.descriptors import (
    KINDS,
    Descriptors,
    descriptor_sentences,
    held_out_ids,
    nearest_descriptors,
    random_descriptors,
    read_descriptors,
    sample_ids,
    word_count,
)
from facelib.systems.face.interpret.params import InterpretError, InterpretParams, descriptor_path

Key = tuple[str, int, str]  # (backbone, seed, variant)


@dataclass
class StudyInputs:
    """Everything the studies read (see the module docstring)."""

    ds: RecDataset
    art: Any  # facelib.text.TextArtifacts
    words: np.ndarray  # [V] str
    sets: dict[Key, Descriptors]
    sample: dict[str, np.ndarray]  # kind -> sorted sampled ids
    root: Path  # where the descriptors were read
    held_out: bool = False  # the sample is of entities the alignment never saw

    @property
    def n(self) -> dict[str, int]:
        return {"user": self.ds.n_users, "item": self.ds.n_items}

    @property
    def c(self) -> int:
        return word_count(next(iter(self.sets.values())))

    @property
    def profile_emb(self) -> dict[str, np.ndarray]:
        return {"user": self.art.user_emb, "item": self.art.item_emb}

    @property
    def profiles(self) -> dict[str, list[str]]:
        return {"user": self.art.profiles.user, "item": self.art.profiles.item}


def load_inputs(p: InterpretParams, root: Path) -> StudyInputs:
    """Dataset, text artifacts and the FACE / map-only descriptor sets of every backbone x
    seed under ``root``, checked against each other; the entity samples."""
    from facelib.text import load_text_artifacts

    ds = load_dataset(paths.processed_dir(p.dataset))
    art = load_text_artifacts(p.dataset)
    if (len(art.user_emb), len(art.item_emb)) != (ds.n_users, ds.n_items):
        raise InterpretError(f"text artifacts of {p.dataset} have {len(art.user_emb)} users x "
                             f"{len(art.item_emb)} items but the dataset {ds.n_users} x "
                             f"{ds.n_items}; run the text stage again (dvc repro text)")
    words = art.vocabulary["word"].astype(str).to_numpy()
    word_index = {w: i for i, w in enumerate(words)}
    n = {"user": ds.n_users, "item": ds.n_items}
    sets: dict[Key, Descriptors] = {}
    for b in p.backbones:
        for s in p.seeds:
            for v in ("face", "map"):
                sets[(b, s, v)] = read_descriptors(descriptor_path(root, p.dataset, b, s, v),
                                                   word_index, n)
    counts = {word_count(d) for d in sets.values()}
    if len(counts) > 1:
        raise InterpretError(f"the descriptor files under {root}/data/systems/face/{p.dataset} hold "
                             f"different numbers of words per entity ({sorted(counts)}); "
                             f"rerun the face stage (dvc repro face)")
    pools = _test_entities(p, root)
    rng = np.random.default_rng(p.seed)
    sample = {kind: sample_ids(n[kind], p.max_entities, rng,
                               None if pools is None else pools[kind]) for kind in KINDS}
    return StudyInputs(ds=ds, art=art, words=words, sets=sets, sample=sample, root=root,
                       held_out=pools is not None)


def _test_entities(p: InterpretParams, root: Path) -> dict[str, np.ndarray] | None:
    """The users and items every studied FACE run held out of its alignment as test
    entities (the studies then sample from them, so no study reads an aligned entity's
    profile), or None when the runs aligned every entity."""
    found = [held_out_ids(descriptor_path(root, p.dataset, b, s, "face"))
             for b in p.backbones for s in p.seeds]
    if all(f is None for f in found):
        return None
    if any(f is None for f in found) or any(
            any(not np.array_equal(f[k], found[0][k]) for k in KINDS) for f in found[1:]):
        raise InterpretError(f"the FACE runs under {root}/data/systems/face/{p.dataset} held "
                             f"out different entities; rerun them with the same "
                             f"face.align_holdout (dvc repro regularize)")
    return found[0]


def add_references(inp: StudyInputs, p: InterpretParams, word_emb: np.ndarray) -> None:
    """Add the random (per seed, shared by backbones) and nearest-words (shared) variants."""
    nearest = nearest_descriptors(inp.profile_emb, word_emb, inp.c)
    for s in p.seeds:
        rnd = random_descriptors(inp.n, len(inp.words), inp.c, np.random.default_rng([p.seed, s]))
        for b in p.backbones:
            inp.sets[(b, s, "random")] = rnd
            inp.sets[(b, s, "nearest")] = nearest


@dataclass
class SentenceEmbeddings:
    """Encoded descriptor sentences of the sampled entities, cached per descriptor set;
    every text encoded in the run is also remembered by its string, so :meth:`encode`
    (the item-retrieval judge's encoder) never encodes a text twice."""

    encoder: Any  # FrozenEncoder
    words: np.ndarray
    noun: str
    sample: dict[str, np.ndarray]
    batch_size: int = 128
    progress: bool = False
    sentences_encoded: int = 0
    _cache: dict[tuple[int, str], np.ndarray] = field(default_factory=dict)
    _rows: dict[str, np.ndarray] = field(default_factory=dict)  # text -> row view

    def __call__(self, d: Descriptors, kind: str) -> np.ndarray:
        """[len(sample[kind]), 384] unit-norm embeddings of the descriptor sentences."""
        key = (id(d[kind]), kind)
        if key not in self._cache:
            texts = descriptor_sentences(self.words, d[kind][self.sample[kind]], kind, self.noun)
            self._cache[key] = self.encoder.encode_texts(texts, self.batch_size,
                                                         progress=self.progress)
            self._rows.update(zip(texts, self._cache[key], strict=True))
            self.sentences_encoded += len(texts)
        return self._cache[key]

    def encode(self, texts: list[str]) -> np.ndarray:
        """[len(texts), 384] unit-norm embeddings of any texts; only the texts not seen
        before in this run go through the encoder (once each, in one pass)."""
        new = list(dict.fromkeys(t for t in texts if t not in self._rows))
        if new:
            out = self.encoder.encode_texts(new, self.batch_size, progress=self.progress)
            self._rows.update(zip(new, out, strict=True))
            self.sentences_encoded += len(new)
        if not texts:
            return np.empty((0, self.encoder.dim), dtype=np.float32)
        return np.stack([self._rows[t] for t in texts])
