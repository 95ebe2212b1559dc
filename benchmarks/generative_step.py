"""The tiny generative backend's CPU cost on MovieLens-100k's leave-one-out split: one
training epoch of LC-Rec's task mix, and generation per user, against a full-logits
baseline timed in the same run.

    .venv/bin/python benchmarks/generative_step.py [--seq 1000] [--asy 300] [--threads 1]

Items get random distinct 4-level indices (4 x 8 x 8 x 8 codes; the cost does not depend
on which). Timed one after the other, from the same initial weights and batches:

- ``response_positions``: the backend's training step with the ``lcrec`` section's
  settings, the output layer applied at the response positions only (``_response_loss``);
- ``full_logits``: the same step with the output layer over every position, then
  :func:`facelib.generative.backend.response_loss` (what LC-Rec's Hugging Face trainer
  computes); both give the same loss (``tests/test_backend.py``);
- ``dropout_unpooled``: the earlier defaults, dropout 0.1 (the attention then leaves the
  fused kernel) and plain shuffled batches (``lm_length_pool`` 1, more padding);
- ``generation``: trie-constrained beam search (beam 20) for ``--users`` test users.

Reported: seconds per epoch of each and the ratios against ``response_positions``,
seconds per generated user, the
machine's 1-minute load average before and after. Written to
``reports/benchmarks/generative_step.json`` unless ``--no-write``.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import time
from pathlib import Path

import numpy as np
import torch

from facelib.generative.backend import TinyBackend, response_loss
from facelib.generative.beam import IndexTrie
from facelib.generative.fit import StopRule
from facelib.generative.lcrec import LCRecParams, item_texts, limit_task, make_backend
from facelib.generative.recommend import generate_top, protocol_view
from facelib.generative.run import load_split
from facelib.generative.tasks import build_lcrec_examples, seq_prompt
from facelib.pipeline import stage_params
from facelib.seed import seed_everything

OUT = Path("reports") / "benchmarks" / "generative_step.json"


def _epoch(seed: int, examples: list, params: LCRecParams, full: bool
           ) -> tuple[float, TinyBackend]:
    """Seconds of one training epoch of a fresh tiny backend (``full``: full logits)."""
    seed_everything(seed)
    backend = make_backend(params, 4, 64, torch.device("cpu"))
    assert isinstance(backend, TinyBackend)
    if full:
        backend._response_loss = (  # type: ignore[method-assign]
            lambda ids, mask, labels: response_loss(backend._logits(ids, mask), labels))
    start = time.perf_counter()
    backend.fit(lambda epoch: examples, lambda: {"x": 0.0},
                StopRule(max_epochs=1, select="x"), np.random.default_rng(seed))
    return time.perf_counter() - start, backend


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seq", type=int, default=1000, help="SEQ examples in the epoch")
    parser.add_argument("--asy", type=int, default=300, help="ASY examples in the epoch")
    parser.add_argument("--users", type=int, default=50, help="users generated for")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    load_before = os.getloadavg()[0]
    ds, split = load_split("ml-100k")
    view = protocol_view("leave_one_out", ds, split)
    rng = seed_everything(0)
    grid = np.array([(a, b, c, d) for a in range(4) for b in range(8) for c in range(8)
                     for d in range(8)])
    codes = grid[rng.permutation(len(grid))[:split.n_items]]
    params = stage_params("lcrec", {})
    examples = build_lcrec_examples(view.train_sequences, item_texts(ds, view), codes,
                                    params.tasks, rng, asy_limit=args.asy)
    examples = limit_task(examples, "seq", args.seq, rng)
    fast, backend = _epoch(0, examples, params, full=False)
    full, _ = _epoch(0, examples, params, full=True)
    earlier = dataclasses.replace(params, lm_dropout=0.1, lm_length_pool=1)
    unpooled, _ = _epoch(0, examples, earlier, full=False)
    histories = split.histories("test", 20)[:args.users]
    start = time.perf_counter()
    generate_top(backend, histories, codes, seq_prompt, IndexTrie(codes), 20)
    per_user = (time.perf_counter() - start) / len(histories)
    result = {"examples": len(examples), "threads": args.threads,
              "settings": {"lm_dropout": params.lm_dropout,
                           "lm_length_pool": params.lm_length_pool},
              "epoch_seconds": {"response_positions": round(fast, 2),
                                "full_logits": round(full, 2),
                                "dropout_unpooled": round(unpooled, 2)},
              "speedup": {"vs_full_logits": round(full / fast, 2),
                          "vs_dropout_unpooled": round(unpooled / fast, 2)},
              "generation_seconds_per_user": round(per_user, 4),
              "load_average": [round(load_before, 2), round(os.getloadavg()[0], 2)]}
    print(json.dumps(result, indent=1))
    if not args.no_write:
        OUT.parent.mkdir(parents=True, exist_ok=True)
        OUT.write_text(json.dumps(result, indent=1) + "\n")


if __name__ == "__main__":
    main()
