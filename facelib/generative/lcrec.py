"""Stage ``lcrec``: LC-Rec (Zheng et al., ICDE 2024) on one protocol and seed.

1. **Item indices.** Each item's text ("Title (year). Genres: ...") is embedded by the
   frozen MiniLM encoder (LC-Rec: LLaMA-7B mean-pooled); an RQ-VAE with K-means-initialised
   codebooks, Sinkhorn on the last level and collision rounds gives every item a distinct
   index of ``levels`` codes (:mod:`facelib.generative.rqvae`).
2. **Instruction tuning.** The tasks of :mod:`facelib.generative.tasks` (SEQ, MUT, ASY,
   ITE, PER; the GPT-written intentions and preferences replaced by templates), templates
   re-drawn every epoch, response-only loss, early stopping on the protocol's validation
   metric of generation (:mod:`facelib.generative.backend`).
3. **Generation.** Trie-constrained beam search over the legal indices: beam 20 on
   leave-one-out; on the 3:1:1 split a beam of at least 50, training items dropped, the
   first 20 kept (:mod:`facelib.generative.recommend`).

The CPU default backend is a small decoder-only transformer trained from scratch: it has no
pretrained language knowledge, so its numbers test LC-Rec's mechanism (indices, tasks,
constrained generation), not what a 7B LLM brings; every output says so. ``backend: hf``
runs any causal LM from a local folder behind the same interface.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, fields
from typing import Any

import numpy as np
import torch

from facelib.config import ParamsError, param
from facelib.data import RecDataset
from facelib.device import resolve_device
from facelib.generative.backend import (
    BACKENDS,
    GenerativeBackend,
    TinyBackend,
    TinyLMConfig,
    load_backend,
)
from facelib.generative.beam import IndexTrie
from facelib.generative.codes import Example
from facelib.generative.fit import FitLog, StopRule
from facelib.generative.recommend import ProtocolView, protocol_view, validation_users
from facelib.generative.rqvae import ItemIndices, RQVAEConfig, assign_indices, train_rqvae
from facelib.generative.run import (
    PROTOCOLS,
    RunFiles,
    RunParams,
    load_split,
    publish_run,
    run_files,
    set_threads,
)
from facelib.generative.tasks import LCREC_TASKS, ItemTexts, build_lcrec_examples, seq_prompt

STAGE = "lcrec"
LM_SELECT = ("loss", "generation")
_RQ = {f.name: f.default for f in fields(RQVAEConfig)}   # defaults written once, there
_LM = {f.name: f.default for f in fields(TinyLMConfig)}
RATIO_NOTE = ("3:1:1: the candidates are the beam's items (beam {beam}), training items "
              "dropped, the first 20 kept")
TINY_NOTE = ("backend 'tiny': a small decoder-only transformer trained from scratch on "
             "these tasks only; it has no pretrained language knowledge")


@dataclass(frozen=True)
class GeneratorParams(RunParams):
    """The fields LC-Rec and Semantic Convergence share: backend, language model, its
    schedule and the beam."""

    backend: str = param("tiny", choices=BACKENDS, help="tiny (CPU, from scratch) | hf")
    model_path: str = param("", help="hf: local folder of a causal LM (no download)")
    lora_r: int = param(0, ge=0, help="hf: LoRA rank (0: full fine-tuning; needs peft)")
    bf16: bool = param(False, help="hf: bf16 autocast")
    lm_layers: int = param(_LM["layers"], ge=1, help="tiny: decoder blocks")
    lm_dim: int = param(_LM["dim"], ge=8, help="tiny: hidden size")
    lm_heads: int = param(_LM["heads"], ge=1, help="tiny: attention heads")
    lm_dropout: float = param(_LM["dropout"], ge=0.0, lt=1.0, help="tiny: dropout")
    lm_lr: float = param(_LM["lr"], gt=0.0, help="tiny: AdamW learning rate")
    lm_batch_size: int = param(_LM["batch_size"], ge=1, help="examples per step")
    lm_length_pool: int = param(_LM["length_pool"], ge=1,
                                help="tiny: batches of similar lengths, drawn from pools of "
                                     "this many batches (1: plain shuffle)")
    lm_max_epochs: int = param(50, ge=1, help="language-model epoch cap")
    lm_eval_every: int = param(1, ge=1, help="epochs per validation")
    lm_patience: int = param(3, ge=1, help="validations without gain before stopping")
    lm_select: str = param("loss", choices=LM_SELECT,
                           help="early stopping on: loss (the teacher-forced loss of every "
                                "validation target, smooth) | generation (the protocol's "
                                "metric of beam search over eval_users, as LC-Rec)")
    seq_limit: int = param(0, ge=0, help="sequential examples drawn per epoch (0: every "
                                        "prefix of every user, as LC-Rec)")
    eval_users: int = param(0, ge=0, help="users scored at each validation (0: all)")
    beam: int = param(20, ge=1, help="beam on leave-one-out (LC-Rec: 20)")
    ratio_beam: int = param(50, ge=50, help="beam on the 3:1:1 split (>= 50)")

    def lm_config(self) -> TinyLMConfig:
        values = {"layers": self.lm_layers, "dim": self.lm_dim, "heads": self.lm_heads,
                  "dropout": self.lm_dropout, "lr": self.lm_lr,
                  "batch_size": self.lm_batch_size, "length_pool": self.lm_length_pool}
        try:
            return TinyLMConfig(**values)
        except ValueError as exc:
            raise ParamsError(f"params: {exc}") from None

    def stop_rule(self, select: str) -> StopRule:
        return StopRule(max_epochs=self.lm_max_epochs, eval_every=self.lm_eval_every,
                        patience=self.lm_patience, select=select)


@dataclass(frozen=True)
class LCRecParams(GeneratorParams):
    """``params.yaml`` section ``lcrec``."""

    protocol: str = param("leave_one_out", choices=PROTOCOLS,
                          help="leave_one_out (LC-Rec's) | ratio (the study's 3:1:1)")
    tasks: list[str] = param(list(LCREC_TASKS), choices=LCREC_TASKS,
                             help="instruction tasks (seq, mut, asy, ite, per)")
    asy_limit: int = param(0, ge=0, help="ASY examples per epoch (0: all; LC-Rec "
                                         "subsamples)")
    levels: int = param(_RQ["levels"], ge=1, le=8, help="codes per item index")
    codebook_size: int = param(_RQ["codebook_size"], ge=2, help="codes per level")
    rqvae_max_epochs: int = param(_RQ["max_epochs"], ge=1, help="RQ-VAE epoch cap")
    rqvae_eval_every: int = param(_RQ["eval_every"], ge=1, help="RQ-VAE epochs per check")
    rqvae_patience: int = param(_RQ["patience"], ge=1, help="RQ-VAE checks without gain")
    rqvae_rel_delta: float = param(_RQ["rel_delta"], ge=0.0, lt=1.0,
                                   help="RQ-VAE: a gain must exceed this share of the best")
    rqvae_select: str = param("-recon_loss", choices=("-recon_loss", "-collision_rate"),
                              help="RQ-VAE state kept: lowest reconstruction loss, or "
                                   "LC-Rec's lowest collision rate of the argmin codes")
    resolve: str = param("nearest_unused", choices=("none", "nearest_unused"),
                         help="collisions left after the Sinkhorn rounds: none (fail, as "
                              "LC-Rec reports them) | nearest_unused (move to a free code)")

    def rqvae_config(self) -> RQVAEConfig:
        try:
            return RQVAEConfig(levels=self.levels, codebook_size=self.codebook_size,
                               max_epochs=self.rqvae_max_epochs,
                               eval_every=self.rqvae_eval_every,
                               patience=self.rqvae_patience,
                               rel_delta=self.rqvae_rel_delta, select=self.rqvae_select,
                               resolve=self.resolve)
        except ValueError as exc:
            raise ParamsError(f"params [{STAGE}]: {exc}") from None


# ------------------------------------------------------------------------ shared pieces
def item_texts(ds: RecDataset, view: ProtocolView) -> ItemTexts:
    """The texts of the view's items, in the view's order."""
    return ItemTexts.from_frame(ds.items, view.item_ids)


def encode_items(texts: ItemTexts, device: torch.device, progress: bool) -> np.ndarray:
    """MiniLM embeddings [I, 384] of every item's text (the RQ-VAE's input)."""
    from facelib.text.encoder import FrozenEncoder

    encoder = FrozenEncoder.load(str(device))
    return encoder.encode_texts([texts.text(i) for i in range(len(texts))], progress=progress)


def make_backend(p: GeneratorParams, levels: int, codebook_size: int,
                 device: torch.device) -> GenerativeBackend:
    """The configured language-model backend (tiny by default)."""
    if p.backend == "tiny":
        return load_backend("tiny", levels=levels, codebook_size=codebook_size,
                            config=p.lm_config(), device=str(device))
    if not p.model_path:
        raise ParamsError("params: backend 'hf' needs model_path, a local folder of a causal "
                          "LM (nothing is downloaded); set it or use backend 'tiny'")
    return load_backend("hf", path=p.model_path, levels=levels, codebook_size=codebook_size,
                        lora_r=p.lora_r, bf16=p.bf16, device=str(device))


def limit_task(examples: list[Example], task: str, limit: int,
               rng: np.random.Generator) -> list[Example]:
    """``examples`` with at most ``limit`` of ``task``'s drawn at random (0: all)."""
    mine = [i for i, e in enumerate(examples) if e.task == task]
    if not limit or len(mine) <= limit:
        return examples
    keep = set(rng.choice(mine, size=limit, replace=False).tolist())
    return [e for i, e in enumerate(examples) if e.task != task or i in keep]


def fit_generator(p: GeneratorParams, backend: GenerativeBackend, view: ProtocolView,
                  codes: np.ndarray, build_epoch: Callable[[np.random.Generator],
                                                           list[Example]],
                  files: RunFiles, publish: bool, progress: bool
                  ) -> tuple[FitLog, Counter[str]]:
    """Train ``backend`` on ``build_epoch``'s examples (re-drawn each epoch from a
    generator of (seed, epoch), so a resumed run sees the same ones) with early stopping on
    ``p.lm_select``: the teacher-forced loss of every validation target (``loss``), or the
    view's validation metric of generation over ``p.eval_users`` (``generation``). Return
    the log, whose ``best`` also holds the generation metrics of the kept state, and the
    examples per task of the first epoch."""
    trie = IndexTrie(codes)
    beam = view_beam(p, view)
    users = validation_users(view, p.eval_users, np.random.default_rng([p.seed, 1]))
    counts: Counter[str] = Counter()

    def examples(epoch: int) -> Sequence[Example]:
        out = limit_task(build_epoch(np.random.default_rng([p.seed, epoch])), "seq",
                         p.seq_limit, np.random.default_rng([p.seed, epoch, 1]))
        if epoch == 1:
            counts.update(e.task for e in out)
        return out

    def generation() -> dict[str, float]:
        return view.evaluate(backend, "valid", codes, seq_prompt, trie, beam, users)

    if p.lm_select == "loss":
        held = view.next_item_examples("valid", codes, seq_prompt)

        def evaluate() -> dict[str, float]:
            return {"loss": backend.mean_response_nll(held)}
        select = "-loss"
    else:
        evaluate, select = generation, view.select
    log = backend.fit(examples, evaluate, p.stop_rule(select),
                      np.random.default_rng(p.seed), progress=progress, resume=p.resume,
                      checkpoint_path=files.state("lm", publish))
    if p.lm_select == "loss":
        log.best = {**generation(), **log.best}
    return log, counts


def view_beam(p: GeneratorParams, view: ProtocolView) -> int:
    """The beam of ``view``'s protocol."""
    return p.beam if view.protocol == "leave_one_out" else p.ratio_beam


def backend_state(backend: GenerativeBackend) -> dict[str, Any]:
    """What a checkpoint keeps of a tiny backend (weights and vocabulary); an hf backend's
    weights stay in their own folder."""
    if not isinstance(backend, TinyBackend) or backend.model is None:
        return {"description": backend.description}
    return {"description": backend.description, "model": backend.model.state_dict(),
            "vocab": list(backend.tokenizer.vocab)}


def notes_for(p: GeneratorParams) -> list[str]:
    return [TINY_NOTE] if p.backend == "tiny" else [f"backend 'hf': {p.model_path}"]


# ------------------------------------------------------------------------ the stage
def run_lcrec(p: LCRecParams, progress: bool = False, publish: bool = False
              ) -> dict[str, Any]:
    """LC-Rec end to end on ``p.protocol`` and ``p.seed``; writes its files together and
    returns its metrics."""
    set_threads(p.num_threads)
    device = resolve_device(p.device, STAGE)
    ds, split = load_split(p.dataset)
    view = protocol_view(p.protocol, ds, split)
    run = f"{p.protocol}-{p.seed}"
    files = run_files(STAGE, p.dataset, run, publish)
    seconds: dict[str, float] = {}
    start = time.perf_counter()

    texts = item_texts(ds, view)
    emb = encode_items(texts, device, progress)
    seconds["encode"] = time.perf_counter() - start
    rq_config = p.rqvae_config()
    rqvae, rq_log = train_rqvae(emb, rq_config, p.seed, progress=progress, resume=p.resume,
                                checkpoint_path=files.state("rqvae", publish))
    t0 = time.perf_counter()
    indices: ItemIndices = assign_indices(rqvae, emb, rq_config)
    if not indices.collision_free:
        raise RuntimeError(f"LC-Rec indices still collide ({indices.summary()['notes']}); "
                           f"set lcrec.resolve: nearest_unused")
    # training parts: their logs' time, which counts every part of a resumed run
    seconds["index"] = rq_log.seconds + time.perf_counter() - t0

    backend = make_backend(p, p.levels, p.codebook_size, device)
    lm_log, counts = fit_generator(
        p, backend, view, indices.codes,
        lambda rng: build_lcrec_examples(view.train_sequences, texts, indices.codes, p.tasks,
                                         rng, asy_limit=p.asy_limit or None),
        files, publish, progress)
    seconds["lm"] = lm_log.seconds
    t0 = time.perf_counter()
    test = view.evaluate(backend, "test", indices.codes, seq_prompt, IndexTrie(indices.codes),
                         view_beam(p, view))
    seconds["test"] = time.perf_counter() - t0
    seconds["total"] = sum(seconds.values())
    stopped = "cap" if "cap" in (rq_log.stopped_by, lm_log.stopped_by) else "early_stopping"
    metrics = {
        "system": STAGE, "label": "LC-Rec", "protocol": p.protocol, "dataset": p.dataset,
        "seed": p.seed, "test": test, "valid": lm_log.best, "stopped_by": stopped,
        "lm": lm_log.summary(), "rqvae": rq_log.summary(), "index": indices.summary(),
        "examples_per_epoch": dict(counts), "backend": backend.description,
        "notes": notes_for(p) + ([RATIO_NOTE.format(beam=p.ratio_beam)]
                                 if p.protocol == "ratio" else []),
        "seconds": {k: round(v, 2) for k, v in seconds.items()}, "device": str(device),
        "threads": torch.get_num_threads(), "params": asdict(p),
    }
    publish_run(files, metrics, {"rqvae": rq_log.history, "lm": lm_log.history},
                {"rqvae": {"model": rqvae.state_dict(), "config": asdict(rq_config)},
                 "lm": backend_state(backend)},
                {"indices": {"codes": indices.codes, "item_ids": view.item_ids}})
    return {**metrics, "history": {"rqvae": rq_log.history, "lm": lm_log.history},
            "texts": texts, "codes": indices.codes}
