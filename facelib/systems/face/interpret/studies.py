"""Studies 1-4, 6 and 7 over every descriptor set of a run, as :class:`~facelib.systems.face.interpret.summary.Record`
lists (the study modules hold the measures; this module only loops over backbones, seeds,
variants and entity types)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from facelib.systems.face.interpret.descriptors import KINDS, VARIANTS, descriptor_sentences
from facelib.systems.face.interpret.genres import (
    genre_lists,
    genre_matrix,
    genre_metrics,
    genre_names,
    prior_scores,
    top_k,
)
from facelib.systems.face.interpret.inputs import SentenceEmbeddings, StudyInputs
from facelib.systems.face.interpret.items import (
    ItemJudge,
    candidate_sets,
    generation_metrics,
    retrieval_accuracy,
)
from facelib.systems.face.interpret.keywords import ProfileKeywords, needed_words
from facelib.systems.face.interpret.params import InterpretError, InterpretParams, checkpoint_path
from facelib.systems.face.interpret.retrieval import retrieval_metrics
from facelib.systems.face.interpret.summary import Record, records_for
from facelib.systems.face.interpret.usage import pairwise_jaccard, top_words, usage_stats


def _runs(p: InterpretParams) -> Iterator[tuple[str, int, str]]:
    """Every (backbone, seed, variant) of a run."""
    for b in p.backbones:
        for s in p.seeds:
            for v in VARIANTS:
                yield b, s, v


def retrieval_records(inp: StudyInputs, p: InterpretParams,
                      emb: SentenceEmbeddings) -> list[Record]:
    """Study 1: descriptor sentence -> own profile among all profiles of its type."""
    out: list[Record] = []
    for b, s, v in _runs(p):
        for kind in KINDS:
            q = emb(inp.sets[(b, s, v)], kind)
            m = retrieval_metrics(q, inp.profile_emb[kind], inp.sample[kind])
            out += records_for("retrieval", b, v, kind, s, m)
    return out


def keyword_records(inp: StudyInputs, p: InterpretParams, encoder: Any,
                    word_emb: np.ndarray) -> list[Record]:
    """Study 2: descriptors that are (lemmas of) profile words, or near synonyms of one.

    Profile words outside the vocabulary are encoded once, each alone, like the
    vocabulary words (``word_emb`` [V, d]); both share one table."""
    texts = {k: [inp.profiles[k][e] for e in inp.sample[k]] for k in KINDS}
    vocab_row = {w: i for i, w in enumerate(inp.words)}
    extra = [w for w in needed_words(texts["user"] + texts["item"]) if w not in vocab_row]
    extra_emb = (encoder.encode_texts(extra, p.batch_size) if extra
                 else np.empty((0, word_emb.shape[1]), np.float32))
    table = np.concatenate([word_emb, extra_emb])  # [V + extra, d]
    row = {**vocab_row, **{w: len(inp.words) + j for j, w in enumerate(extra)}}
    kw = {k: ProfileKeywords.from_texts(texts[k], row) for k in KINDS}
    out: list[Record] = []
    for b, s, v in _runs(p):
        for kind in KINDS:
            idx = inp.sets[(b, s, v)][kind][inp.sample[kind]]  # [M, C]
            desc_words = [list(inp.words[r]) for r in idx]
            m = kw[kind].shares(desc_words, idx, table, p.synonym_threshold)
            out += records_for("keywords", b, v, kind, s, m)
    return out


def genre_records(inp: StudyInputs, p: InterpretParams, encoder: Any,
                  emb: SentenceEmbeddings) -> tuple[list[Record], dict[str, Any]]:
    """Study 3: zero-shot genre ranking by the item descriptor sentence, with the genre
    prior and the profile embedding beside it. Empty when the items have no genres."""
    lists = genre_lists(inp.ds.items)
    if lists is None or not any(lists):
        return [], {"available": False}
    names = genre_names(lists)
    genre_emb = encoder.encode_texts(names, p.batch_size)  # [G, d]
    truth_all = genre_matrix(lists, names)
    items = inp.sample["item"]
    truth = truth_all[items]
    k = top_k(truth_all)
    out: list[Record] = []
    for b, s, v in _runs(p):
        scores = emb(inp.sets[(b, s, v)], "item") @ genre_emb.T  # [M, G]
        out += records_for("genre", b, v, "item", s, genre_metrics(scores, truth, k))
    base = {"prior": prior_scores(truth_all, len(items)),
            "profile": inp.art.item_emb[items] @ genre_emb.T}
    for name, scores in base.items():
        m = genre_metrics(scores, truth, k)
        for b in p.backbones:
            for s in p.seeds:
                out += records_for("genre", b, name, "item", s, m)
    info = {"available": True, "genres": names, "k": k,
            "items_with_genres": int(truth.any(axis=1).sum())}
    return out, info


def usage_records(inp: StudyInputs, p: InterpretParams
                  ) -> tuple[list[Record], dict[str, Any]]:
    """Study 4a: codebook usage of every set over *all* users and items (no sampling);
    the most used words of the first seed."""
    out: list[Record] = []
    top: dict[str, Any] = {}
    v_size = len(inp.words)
    for b, s, v in _runs(p):
        d = inp.sets[(b, s, v)]
        parts = {**d, "all": np.concatenate([d["user"], d["item"]])}
        for ent, idx in parts.items():
            out += records_for("usage", b, v, ent, s, usage_stats(idx, v_size))
            if s == p.seeds[0]:
                top.setdefault(b, {}).setdefault(v, {})[ent] = top_words(idx, inp.words)
    return out, top


def stability_records(inp: StudyInputs, p: InterpretParams) -> list[Record]:
    """Study 4b: mean Jaccard of an entity's words between every pair of seeds (same
    backbone); nothing with a single seed."""
    out: list[Record] = []
    if len(p.seeds) < 2:
        return out
    for b in p.backbones:
        for v in VARIANTS:
            for ent in (*KINDS, "all"):
                runs = {}
                for s in p.seeds:
                    d = inp.sets[(b, s, v)]
                    runs[str(s)] = (np.concatenate([d["user"], d["item"]]) if ent == "all"
                                    else d[ent])
                for pair, value in pairwise_jaccard(runs).items():
                    out.append(Record("stability", b, v, ent, "jaccard", pair, value))
    return out


# The checkpoint whose FACE decodes each variant (item generation): the map-only words go
# through the map stage's decoder, every other variant through the align stage's.
DECODER_STAGE = {"face": "align", "map": "map", "random": "align", "nearest": "align"}


def check_checkpoint(path: Path, stage: str) -> None:
    """Raise the one-line "run the face stage first" error when ``path`` is missing."""
    if not path.is_file():
        raise InterpretError(f"no FACE {stage} checkpoint at {path}; run the face stage "
                             f"first: dvc repro face")


def check_checkpoints(inp: StudyInputs, p: InterpretParams) -> None:
    """Every checkpoint item generation (and the t-SNE map) reads is there: checked before
    the encoder starts."""
    for b in p.backbones:
        for s in p.seeds:
            for stage in sorted(set(DECODER_STAGE.values())):
                check_checkpoint(checkpoint_path(inp.root, p.dataset, b, s, stage), stage)


def item_candidates(inp: StudyInputs, p: InterpretParams) -> dict[int, tuple[np.ndarray,
                                                                             np.ndarray]]:
    """Study 6's questions for the sampled items, per N in ``retrieval_candidates``:
    (candidates [M, N], true position [M]), drawn with a generator seeded by (seed, N), so
    every variant, backbone and seed is asked the same questions."""
    items = inp.sample["item"]
    return {n: candidate_sets(items, inp.ds.n_items, n, np.random.default_rng([p.seed, n]))
            for n in sorted(p.retrieval_candidates)}


def item_retrieval_records(inp: StudyInputs, p: InterpretParams, judge: ItemJudge,
                           texts: list[str]) -> list[Record]:
    """Study 6: the judge picks each sampled item among N candidates from its descriptor
    sentence alone (``texts`` [I]: each item's candidate text). A descriptor set shared by
    several runs (random, nearest) is judged once."""
    items = inp.sample["item"]
    questions = item_candidates(inp, p)
    rows = {n: [[texts[j] for j in row] for row in cands]
            for n, (cands, _) in questions.items()}
    judged: dict[int, dict[str, float]] = {}
    out: list[Record] = []
    for b, s, v in _runs(p):
        idx = inp.sets[(b, s, v)]["item"]
        if id(idx) not in judged:
            queries = descriptor_sentences(inp.words, idx[items], "item", inp.ds.item_noun)
            judged[id(idx)] = {f"acc@{n}": retrieval_accuracy(judge.choose(queries, rows[n]),
                                                              questions[n][1])
                               for n in questions}
        out += records_for("item_retrieval", b, v, "item", s, judged[id(idx)])
    return out


def item_generation_records(inp: StudyInputs, p: InterpretParams) -> list[Record]:
    """Study 7: decode each sampled item's descriptors through FACE's decoder
    (:meth:`FACE.decode_words`) and rank the true item among all items by ``x_hat . e_i``,
    with the fine-tuned item embeddings of the checkpoint that decodes
    (:data:`DECODER_STAGE`)."""
    import torch

    from facelib.systems.face.stage import load_face_checkpoint

    items = inp.sample["item"]
    codebook = torch.from_numpy(inp.art.codebook)
    out: list[Record] = []
    for b in p.backbones:
        for s in p.seeds:
            models = {}
            for stage in sorted(set(DECODER_STAGE.values())):
                path = checkpoint_path(inp.root, p.dataset, b, s, stage)
                check_checkpoint(path, stage)
                backbone, face = load_face_checkpoint(path, inp.ds, codebook)
                if face is None:
                    raise InterpretError(f"the checkpoint {path} holds no FACE module; rerun "
                                         f"the face stage (dvc repro face)")
                with torch.no_grad():
                    item_emb = backbone.embeddings_for_eval()[1].cpu().numpy()  # [I, d]
                models[stage] = (face, item_emb)
            for v in VARIANTS:
                face, item_emb = models[DECODER_STAGE[v]]
                idx = torch.from_numpy(inp.sets[(b, s, v)]["item"][items])  # [M, C]
                x_hat = face.decode_words(idx).cpu().numpy()  # [M, d]
                out += records_for("item_generation", b, v, "item", s,
                                   generation_metrics(x_hat, item_emb, items))
    return out
