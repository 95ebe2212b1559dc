"""Stage ``semconv``: Semantic Convergence (Li et al., AAAI-25), **reconstructed**, on
leave-one-out, one seed.

The paper has no public code; everything here follows ``related-systems.md`` §4's
reconstruction and every output is labelled "Semantic Convergence (reconstructed)".

1. **Alignment tokenization.** The item embeddings of a CF model trained on the same
   leave-one-out split (the ``loo_baselines`` run of ``backbone`` and the same seed) go
   through cascaded codebooks that live in the frozen encoder's token-embedding space
   (:mod:`facelib.generative.semantic_tokens`): every code reads as a word.
2. **Alignment tasks.** Sequential, textual, query and negative-sampling tasks
   (:mod:`facelib.generative.tasks`) on the same backend as LC-Rec, early-stopped on
   validation NDCG@10 of generation.
3. **Serving.** Every user's top-K is generated offline into a cache
   (:mod:`facelib.generative.cache`); test metrics are read from it, and the run times
   cached lookup against generation.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

import numpy as np
import torch

from facelib.config import ParamsError, build, param
from facelib.device import resolve_device
from facelib.generative.beam import IndexTrie
from facelib.generative.cache import build_cache, serving_benchmark
from facelib.generative.lcrec import (
    GeneratorParams,
    backend_state,
    fit_generator,
    item_texts,
    make_backend,
    notes_for,
)
from facelib.generative.leave_one_out import MAX_HISTORY, loo_metrics
from facelib.generative.recommend import LOO_WIDTH, protocol_view
from facelib.generative.run import load_split, publish_run, run_files, set_threads
from facelib.generative.semantic_tokens import (
    LABEL,
    MODES,
    SemanticTokenizerConfig,
    train_semantic_tokenizer,
)
from facelib.generative.tasks import SC_TASKS, build_semconv_examples, seq_prompt

STAGE = "semconv"
_TOK = {f.name: f.default for f in fields(SemanticTokenizerConfig)}  # written once, there
RECONSTRUCTED = f"{LABEL}: no public code; model, losses and tasks reconstructed"
BENCH_USERS = 20  # users timed by the serving benchmark


@dataclass(frozen=True)
class SemConvParams(GeneratorParams):
    """``params.yaml`` section ``semconv``."""

    backbone: str = param("lightgcn", choices=("mf", "lightgcn"),
                          help="CF model whose item embeddings are tokenised (its "
                               "loo_baselines run of the same seed)")
    tasks: list[str] = param(list(SC_TASKS), choices=SC_TASKS,
                             help="alignment tasks (seq, text, query, negative)")
    n_negatives: int = param(1, ge=1, help="popularity-sampled negatives per user")
    mode: str = param(_TOK["mode"], choices=MODES,
                      help="tied (codebooks learn, aligned to tokens) | frozen (FACE-like)")
    align_weight: float = param(_TOK["align_weight"], ge=0.0, help="tied: L_align weight")
    levels: int = param(_TOK["levels"], ge=1, le=8, help="codes per item index")
    codebook_size: int = param(_TOK["codebook_size"], ge=2, help="codes per level")
    tok_max_epochs: int = param(_TOK["max_epochs"], ge=1, help="tokenizer epoch cap")
    tok_eval_every: int = param(_TOK["eval_every"], ge=1, help="tokenizer epochs per check")
    tok_patience: int = param(_TOK["patience"], ge=1, help="tokenizer checks without gain")
    tok_rel_delta: float = param(_TOK["rel_delta"], ge=0.0, lt=1.0,
                                 help="tokenizer: a gain must exceed this share of the best")
    cache_k: int = param(20, ge=1, help="items cached per user (<= beam)")

    def tokenizer_config(self) -> SemanticTokenizerConfig:
        try:
            return SemanticTokenizerConfig(
                levels=self.levels, codebook_size=self.codebook_size, mode=self.mode,
                align_weight=self.align_weight, max_epochs=self.tok_max_epochs,
                eval_every=self.tok_eval_every, patience=self.tok_patience,
                rel_delta=self.tok_rel_delta)
        except ValueError as exc:
            raise ParamsError(f"params [{STAGE}]: {exc}") from None


def cf_embeddings(p: SemConvParams, item_ids: np.ndarray, publish: bool) -> np.ndarray:
    """Item embeddings [I, d] of the ``loo_baselines`` run of ``p.backbone`` and ``p.seed``
    (a smoke run makes a small one when it has none)."""
    from facelib.generative.baselines import BaselineParams, run_baseline

    path = run_files("loo_baselines", p.dataset, f"{p.backbone}-{p.seed}", publish).data \
        / "embeddings.npz"
    if not path.is_file() and not publish:
        run_baseline(build(BaselineParams, {"dataset": p.dataset, "model": p.backbone,
                                            "seed": p.seed, "device": p.device},
                           "loo_baselines"))
    if not path.is_file():
        raise FileNotFoundError(f"no item embeddings at {path}; run the loo_baselines stage "
                                f"for {p.backbone}-{p.seed} first (make generative)")
    with np.load(path) as z:
        if not np.array_equal(z["item_ids"], item_ids):
            raise ValueError(f"{path} was made on another leave-one-out split; rerun the "
                             f"loo_baselines stage (make generative)")
        return np.asarray(z["item"], dtype=np.float32)


def word_table(device: torch.device) -> tuple[list[str], np.ndarray]:
    """The encoder's word list (FACE's vocabulary filter) and their input token
    embeddings [V, 384]: the token space the codes live in."""
    from facelib.text.encoder import FrozenEncoder
    from facelib.text.vocabulary import build_vocabulary, codebook

    encoder = FrozenEncoder.load(str(device))
    vocab = build_vocabulary(encoder.tokenizer)
    return vocab["word"].tolist(), codebook(encoder, vocab).cpu().numpy()


def run_semconv(p: SemConvParams, progress: bool = False, publish: bool = False
                ) -> dict[str, Any]:
    """Semantic Convergence (reconstructed) on leave-one-out and ``p.seed``; writes its
    files together and returns its metrics."""
    if p.cache_k > p.beam:
        raise ParamsError(f"params [{STAGE}]: cache_k = {p.cache_k} exceeds beam = {p.beam}; "
                          f"lower cache_k or raise beam")
    set_threads(p.num_threads)
    device = resolve_device(p.device, STAGE)
    ds, split = load_split(p.dataset)
    view = protocol_view("leave_one_out", ds, split)
    files = run_files(STAGE, p.dataset, str(p.seed), publish)
    seconds: dict[str, float] = {}

    item_emb = cf_embeddings(p, split.item_ids, publish)
    words, table = word_table(device)
    config = p.tokenizer_config()
    tokenizer, tokens, tok_log = train_semantic_tokenizer(
        item_emb, table, words, config, p.seed, progress=progress, resume=p.resume,
        checkpoint_path=files.state("tokenizer", publish))
    # training parts: their logs' time, which counts every part of a resumed run
    seconds["tokenize"] = tok_log.seconds

    texts = item_texts(ds, view)
    backend = make_backend(p, p.levels, p.codebook_size, device)
    lm_log, counts = fit_generator(
        p, backend, view, tokens.codes,
        lambda rng: build_semconv_examples(view.train_sequences, texts, tokens.codes,
                                           p.tasks, rng, n_negatives=p.n_negatives),
        files, publish, progress)
    seconds["lm"] = lm_log.seconds

    t0 = time.perf_counter()
    trie = IndexTrie(tokens.codes)
    histories = split.histories("test", MAX_HISTORY)
    cache = build_cache(backend, histories, tokens.codes, seq_prompt, trie, p.beam, p.cache_k)
    seconds["cache"] = time.perf_counter() - t0
    top = np.pad(cache.items, ((0, 0), (0, max(0, LOO_WIDTH - p.cache_k))), constant_values=-1)
    test = loo_metrics(top, split.targets("test"), split.n_items)
    t0 = time.perf_counter()
    bench_users = np.random.default_rng([p.seed, 2]).choice(
        split.n_users, size=min(BENCH_USERS, split.n_users), replace=False)
    serving = serving_benchmark(cache, backend, histories, tokens.codes, seq_prompt, trie,
                                p.beam, bench_users)
    seconds["serving"] = time.perf_counter() - t0
    seconds["total"] = sum(seconds.values())
    stopped = ("cap" if "cap" in (tok_log.stopped_by, lm_log.stopped_by)
               else "early_stopping")
    metrics = {
        "system": STAGE, "label": LABEL, "protocol": "leave_one_out", "dataset": p.dataset,
        "seed": p.seed, "test": test, "valid": lm_log.best, "stopped_by": stopped,
        "lm": lm_log.summary(), "tokenizer": tok_log.summary(), "tokens": tokens.summary(),
        "examples_per_epoch": dict(counts), "backend": backend.description,
        "serving": serving, "notes": [RECONSTRUCTED, *notes_for(p)],
        "seconds": {k: round(v, 2) for k, v in seconds.items()}, "device": str(device),
        "threads": torch.get_num_threads(), "params": asdict(p),
    }
    words_of = np.array([" ".join(tokens.item_words(i)) for i in range(len(tokens.codes))])
    publish_run(files, metrics, {"tokenizer": tok_log.history, "lm": lm_log.history},
                {"tokenizer": {"model": tokenizer.state_dict(), "config": asdict(config)},
                 "lm": backend_state(backend)},
                {"tokens": {"codes": tokens.codes, "item_ids": split.item_ids,
                            "words": words_of},
                 "cache": {"items": cache.items}})
    return {**metrics, "history": {"tokenizer": tok_log.history, "lm": lm_log.history},
            "item_words": words_of, "texts": texts}


def cache_path(dataset: str, seed: int, publish: bool) -> Path:
    """Where the run of ``seed`` keeps its top-K cache (``TopKCache.load`` reads it)."""
    return run_files(STAGE, dataset, str(seed), publish).data / "cache.npz"
