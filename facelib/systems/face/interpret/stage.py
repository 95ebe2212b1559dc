"""The ``interpret`` stage: every study for every variant, backbone and seed; the metrics
JSON, the figures, the case studies and the descriptor explorer.

Cost: the frozen encoder runs over the vocabulary once (each word alone), over the
profile words outside it, over one descriptor sentence per sampled entity for each
distinct descriptor set ((FACE + map-only) x backbones x seeds, random x seeds, nearest
once), and over the candidate text of each item that is a candidate in item retrieval
(once per item; the descriptor sentences are reused). Item generation loads the map and
align checkpoints of every run and decodes the sampled items' words (no encoder).
``max_entities`` bounds the sample per entity type; the metrics record the bound, the
number of sentences encoded and the seconds per part.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import pandas as pd
import torch

from facelib.systems.face.interpret.cases import (
    dominant_genre_labels,
    item_cases,
    point_label,
    spread_points,
    titles,
    tsne_coords,
    tsne_figure,
    user_cases,
)
from facelib.systems.face.interpret.descriptors import KINDS, LABELS, join_words
from facelib.systems.face.interpret.explorer import explorer_payload, write_explorer
from facelib.systems.face.interpret.figures import plot_items, plot_studies, plot_usage
from facelib.systems.face.interpret.inputs import SentenceEmbeddings, StudyInputs, add_references, load_inputs
from facelib.systems.face.interpret.params import (
    InterpretError,
    InterpretParams,
    InterpretPaths,
    checkpoint_path,
    input_root,
    interpret_paths,
    required_inputs,
)
from facelib.systems.face.interpret.items import (
    EncoderJudge,
    ItemJudge,
    generation_chance,
    item_texts,
    retrieval_chance,
)
from facelib.systems.face.interpret.retrieval import chance_metrics
from facelib.systems.face.interpret.studies import (
    DECODER_STAGE,
    check_checkpoints,
    genre_records,
    item_generation_records,
    item_retrieval_records,
    keyword_records,
    retrieval_records,
    stability_records,
    usage_records,
)
from facelib.systems.face.interpret.summary import aggregate, scope_sentence, verdicts
from facelib.systems.face.interpret.usage import random_jaccard, usage_counts

N_LABELS = 8  # items labelled on the t-SNE map


@dataclass
class InterpretResult:
    """What the notebook shows: the metrics tree, case-study tables, figures, paths."""

    metrics: dict[str, Any]
    cases: dict[str, pd.DataFrame]
    figures: dict[str, Any]
    paths: InterpretPaths


def run_convergence(p: InterpretParams, root: Any) -> dict[str, str | None]:
    """How each studied FACE run ended (its metrics JSON's ``stopped_by``; None when the
    file is missing or predates the field)."""
    import json

    from facelib.systems.face.params import GROUP, run_files

    out: dict[str, str | None] = {}
    for b in p.backbones:
        for s in p.seeds:
            path = run_files(root, GROUP, p.dataset, f"{b}-{s}")["metrics"]
            out[f"{b}-{s}"] = (json.loads(path.read_text()).get("stopped_by")
                               if path.is_file() else None)
    return out


def tsne_map(inp: StudyInputs, p: InterpretParams) -> Any:
    """Study 5b: t-SNE of the first backbone/seed's FACE item embeddings, coloured by the
    most specific genre, with a few items' titles and descriptors."""
    from facelib.systems.face.stage import load_face_checkpoint

    b, s = p.backbones[0], p.seeds[0]
    path = checkpoint_path(inp.root, p.dataset, b, s, "align")
    if not path.is_file():
        raise InterpretError(f"no FACE align checkpoint at {path}; run the face stage "
                             f"first: dvc repro face")
    backbone, _ = load_face_checkpoint(path, inp.ds, torch.from_numpy(inp.art.codebook))
    with torch.no_grad():
        item_emb = backbone.embeddings_for_eval()[1].cpu().numpy()  # [I, d]
    rng = np.random.default_rng(p.seed)
    rows = np.sort(rng.choice(len(item_emb), p.tsne_items, replace=False)) \
        if 0 < p.tsne_items < len(item_emb) else np.arange(len(item_emb))
    coords = tsne_coords(item_emb[rows], p.seed)
    dominant = dominant_genre_labels(inp.ds)
    groups = [dominant[i] for i in rows]
    face = inp.sets[(b, s, "face")]["item"]
    names = titles(inp.ds)
    labels = {int(j): point_label(names.iloc[rows[j]], join_words(inp.words, face[rows[j]]))
              for j in spread_points(coords, N_LABELS, p.seed)}
    return tsne_figure(coords, groups, labels,
                       f"{p.dataset}: t-SNE of {b} item embeddings after FACE (seed {s}), "
                       f"{len(rows):,} items; labels: title and first FACE descriptors")


def case_tables(inp: StudyInputs, p: InterpretParams) -> dict[str, pd.DataFrame]:
    """Study 5a: a few sampled users and items beside the first backbone/seed's words."""
    b, s = p.backbones[0], p.seeds[0]
    sets = {LABELS[v]: inp.sets[(b, s, v)] for v in ("face", "map", "nearest")}
    rng = np.random.default_rng(p.seed + 1)
    pick = {k: sorted(rng.choice(inp.sample[k], min(p.case_studies, len(inp.sample[k])),
                                 replace=False).tolist()) for k in KINDS}
    return {"users": user_cases(inp.ds, inp.profiles["user"], sets, inp.words, pick["user"],
                                seed=p.seed),
            "items": item_cases(inp.ds, inp.profiles["item"], sets, inp.words, pick["item"])}


def _explorer(inp: StudyInputs, p: InterpretParams, ip: InterpretPaths) -> None:
    b, s = p.backbones[0], p.seeds[0]
    sets = {f"FACE ({b}, seed {s})": inp.sets[(b, s, "face")],
            "map-only": inp.sets[(b, s, "map")]}
    note = (f"{inp.c} descriptors per entity: FACE after the align stage and the map stage "
            f"alone, {b} seed {s}; profiles by the {inp.art.profiles.builder} builder; liked "
            f"titles are a sample of the training items. Type to filter by any text.")
    payload = explorer_payload(inp.ds, inp.profiles, sets, inp.words,
                               f"FACE descriptor explorer: {p.dataset}", note, p.seed)
    write_explorer(payload, ip.explorer)


def run_interpret(p: InterpretParams, progress: bool = False, publish: bool = False,
                  judge: ItemJudge | None = None) -> InterpretResult:
    """Run every study; write the metrics JSON, figures and explorer (``publish``: under the
    repository, else ``build/smoke/``); return them for the notebook.

    ``judge`` answers the item-retrieval questions (study 6); None: :class:`EncoderJudge`,
    the frozen sentence encoder by cosine (not a generative LLM). Its ``name`` is recorded.

    ``p.num_threads`` > 0 caps torch's threads and, for the run, the OpenMP/BLAS pools of
    NumPy and scikit-learn (t-SNE): on a machine shared with other jobs one thread is
    often faster than two that wait on each other."""
    with cpu_threads(p.num_threads):
        return _run(p, progress, publish, judge)


@contextmanager
def cpu_threads(n: int) -> Iterator[None]:
    """Cap torch's threads and the OpenMP/BLAS pools (threadpoolctl) at ``n`` for the
    block, then restore torch's count; ``n`` = 0 changes nothing."""
    if n <= 0:
        yield
        return
    from threadpoolctl import threadpool_limits

    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        with threadpool_limits(n):
            yield
    finally:
        torch.set_num_threads(before)


def _run(p: InterpretParams, progress: bool, publish: bool,
         judge: ItemJudge | None) -> InterpretResult:
    from facelib.io import write_json
    from facelib.text import FrozenEncoder

    t_all, c_all, seconds = time.perf_counter(), time.process_time(), {}
    clock = [time.perf_counter()]

    def lap(name: str) -> None:
        now = time.perf_counter()
        seconds[name] = round(now - clock[0], 2)
        clock[0] = now

    ip = interpret_paths(publish)
    inp = load_inputs(p, input_root(p, publish))
    too_many = [n for n in p.retrieval_candidates if n > inp.ds.n_items]
    if too_many:
        raise InterpretError(f"params [interpret.retrieval_candidates]: {too_many} exceed the "
                             f"{inp.ds.n_items} items of {p.dataset}; list values <= "
                             f"{inp.ds.n_items}")
    check_checkpoints(inp, p)
    encoder = FrozenEncoder.load(p.device)
    lap("load")
    word_emb = inp.art.word_emb  # [V, 384]: each vocabulary word encoded alone (text stage)
    add_references(inp, p, word_emb)
    emb = SentenceEmbeddings(encoder, inp.words, inp.ds.item_noun, inp.sample, p.batch_size,
                             progress)
    lap("vocabulary")
    records = retrieval_records(inp, p, emb)
    lap("retrieval")
    records += keyword_records(inp, p, encoder, word_emb)
    lap("keywords")
    genre, genre_info = genre_records(inp, p, encoder, emb)
    records += genre
    lap("genre")
    texts, text_source = item_texts(inp.ds.items, inp.profiles["item"])
    if judge is None:
        judge = EncoderJudge(emb.encode, name=f"frozen encoder {encoder.name} (cosine)")
    before = emb.sentences_encoded
    records += item_retrieval_records(inp, p, judge, texts)
    retrieval_info = {"judge": judge.name, "candidates": sorted(p.retrieval_candidates),
                      "sampled_items": len(inp.sample["item"]), "candidate_text": text_source,
                      "texts_encoded": emb.sentences_encoded - before}
    lap("item_retrieval")
    records += item_generation_records(inp, p)
    generation_info = {"sampled_items": len(inp.sample["item"]), "items_ranked": inp.ds.n_items,
                       "decoder_checkpoint": dict(DECODER_STAGE),
                       "score": "x_hat . e_i, fine-tuned item embeddings of that checkpoint"}
    lap("item_generation")
    usage, top = usage_records(inp, p)
    records += usage + stability_records(inp, p)
    lap("usage")
    metrics: dict[str, Any] = {
        "dataset": p.dataset, "backbones": list(p.backbones), "seeds": list(p.seeds),
        "word_num": inp.c, "vocabulary_size": len(inp.words),
        "profile_builder": inp.art.profiles.builder, "encoder": encoder.name,
        "entities": inp.n, "sampled": {k: len(v) for k, v in inp.sample.items()},
        "sample_from": ("test entities held out of the alignment" if inp.held_out
                        else "all entities (the alignment trained on their profiles)"),
        "sentences_encoded": emb.sentences_encoded,
        "chance": {"retrieval": {k: chance_metrics(inp.n[k]) for k in KINDS},
                   "jaccard": random_jaccard(inp.c, len(inp.words)),
                   "item_retrieval": retrieval_chance(sorted(p.retrieval_candidates)),
                   "item_generation": generation_chance(inp.ds.n_items)},
        "genre_info": genre_info, "synonym_threshold": p.synonym_threshold,
        "item_retrieval_info": retrieval_info, "item_generation_info": generation_info,
        **aggregate(records), "top_words": top,
        "device": str(encoder.device), "threads": torch.get_num_threads(),
        "params": asdict(p),
    }
    metrics["stopped_by"] = run_convergence(p, inp.root)
    metrics["verdicts"] = [scope_sentence(metrics), *verdicts(metrics)]
    b, s = p.backbones[0], p.seeds[0]
    figures = {"studies": plot_studies(metrics), "items": plot_items(metrics),
               "usage": plot_usage({LABELS[v]: usage_counts(np.concatenate(
                   list(inp.sets[(b, s, v)].values())), len(inp.words)) for v in LABELS
                   if (b, s, v) in inp.sets},
                   f"{p.dataset}: word usage over all users and items ({b}, seed {s})")}
    lap("figures")
    figures["tsne"] = tsne_map(inp, p)
    lap("tsne")
    cases = case_tables(inp, p)
    _explorer(inp, p, ip)
    lap("cases_explorer")
    for name, fig in figures.items():
        ip.figures[name].parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(ip.figures[name], dpi=120, bbox_inches="tight")
    import matplotlib.pyplot as plt

    for fig in figures.values():
        plt.close(fig)
    seconds["total"] = round(time.perf_counter() - t_all, 2)
    seconds["cpu_total"] = round(time.process_time() - c_all, 2)
    metrics["seconds"] = seconds
    write_json(metrics, ip.metrics)
    return InterpretResult(metrics=metrics, cases=cases, figures=figures, paths=ip)


def prepare_smoke_descriptors(p: InterpretParams, progress: bool = False) -> None:
    """For an unpublished (smoke) run: tiny FACE runs (build/smoke) for every backbone x
    seed, each trained unless one with the same params is there; nothing when build/smoke
    holds no full set and the repository does (the study's runs are then read)."""
    from facelib import paths
    from facelib.config import build
    from facelib.systems.face.stage import FaceParams, ensure_smoke_run
    from facelib.train.stage import output_root

    def full(root: Any) -> bool:
        return all(path.is_file() for path, _, _ in required_inputs(p, root))

    if full(paths.repo_root()) and not full(output_root(False)):
        return  # the study's runs are read (input_root)
    for b in p.backbones:
        for s in p.seeds:
            fp = build(FaceParams, {**SMOKE_FACE, "dataset": p.dataset, "backbone": b,
                                    "seed": s}, "face")
            with cpu_threads(p.num_threads):
                ensure_smoke_run(fp, progress)


SMOKE_FACE = dict(word_num=4, word_dim=16, ffn_dim=64, lr=0.01, map_max_epochs=3,
                  align_max_epochs=2, patience=2, batch_size=128, map_steps_per_epoch=3,
                  align_steps_per_epoch=2, align_entities=24, control=False, device="cpu")
