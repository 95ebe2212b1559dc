"""Seconds per FACE map and align step, per entity, and peak memory, on the real MiniLM.

    .venv/bin/python benchmarks/face_step.py                 # small grid, ~2-4 min on 2 cores
    .venv/bin/python benchmarks/face_step.py --batch 8,32,256 --word-num 8,16 --steps 5
    .venv/bin/python benchmarks/face_step.py --json reports/metrics/face_step.json

One step = ``FACE.losses`` on a batch of B (user, pos, neg) triples (3B entities) + backward
+ an Adam step over FACE's parameters and the batch embeddings, as the trainer runs it
(without the backbone). Map: L_vq + L_rec. Align: + L_align, the frozen MiniLM forward and
backward over the 3B prompt sequences of length L = 1 + 13 + 2C - 1 + 1 (or over
``--align-entities`` sampled rows, the CPU profile's bound). The vocabulary is the first V
whole-word lowercase tokens of MiniLM (V = 9,000 by default, like the filtered vocabulary);
embeddings and profiles are random, which does not change the cost.

Every configuration runs in a fresh process, so "peak MB" is that process's peak resident
memory (model and libraries included) and "step MB" its growth over the set-up state.
Timings are means over ``--steps`` steps after ``--warmup`` steps, with ``--threads``
torch threads.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import re
import resource
import time
from types import SimpleNamespace
from typing import Any


def rss_mb(field: str) -> float:
    """VmRSS / VmHWM of this process in MB (Linux), else the peak from getrusage."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def measure(job: dict[str, Any]) -> dict[str, Any]:
    """Time one configuration (runs in its own process)."""
    import torch
    import torch.nn.functional as F

    from facelib.models.face import FACE, FACEConfig
    from facelib.text.encoder import FrozenEncoder

    torch.set_num_threads(job["threads"])
    torch.manual_seed(0)
    enc = FrozenEncoder.load("cpu")
    vocab = sorted(
        (i for t, i in enc.tokenizer.get_vocab().items() if re.fullmatch("[a-z]+", t))
    )[: job["vocab"]]
    codebook = enc.token_embeddings[torch.tensor(vocab)]
    b, d = job["batch"], job["dim"]
    config = FACEConfig(
        word_num=job["word_num"],
        word_dim=job["word_dim"],
        stage=job["stage"],
        align_entities=job["align_entities"],
    )
    profiles = F.normalize(torch.randn(b, enc.dim), dim=-1)
    kw = dict(encoder=enc, user_profiles=profiles, item_profiles=profiles)
    face = FACE(config, d, codebook, **(kw if job["stage"] == "align" else {}))
    face.train()
    emb = torch.randn(3, b, d, requires_grad=True)
    opt = torch.optim.Adam([*face.parameters(), emb], lr=1e-3)
    ids = torch.arange(b)
    base_mb = rss_mb("VmRSS")

    def step() -> None:
        out = SimpleNamespace(user_emb=emb[0], pos_emb=emb[1], neg_emb=emb[2])
        losses = face.losses(out, ids, ids, ids)
        opt.zero_grad()
        sum(losses.values()).backward()
        opt.step()

    for _ in range(job["warmup"]):
        step()
    start = time.perf_counter()
    for _ in range(job["steps"]):
        step()
    seconds = (time.perf_counter() - start) / job["steps"]
    rows = 3 * b if job["align_entities"] is None else min(3 * b, job["align_entities"])
    seq = face.prompt.lengths[0] if face.prompt is not None else None
    return {
        **{k: job[k] for k in ("stage", "batch", "word_num", "word_dim", "vocab", "threads")},
        "entities": 3 * b,
        "aligned": rows if job["stage"] == "align" else 0,
        "seq_len": seq,
        "s_per_step": seconds,
        "ms_per_entity": 1000 * seconds / (3 * b),
        "peak_mb": rss_mb("VmHWM"),
        "step_mb": rss_mb("VmHWM") - base_mb,
    }


def ints(text: str) -> list[int]:
    return [int(v) for v in text.split(",") if v]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--batch", type=ints, default=[8, 32], help="align batch sizes B (3B rows)")
    p.add_argument("--word-num", type=ints, default=[4, 8, 16], help="C values for align")
    p.add_argument("--map-batch", type=int, default=256, help="B of the map step (paper 256)")
    p.add_argument("--bounded", type=ints, default=[64],
                   help="align_entities bounds timed at B = --map-batch, C = 16 ('' for none)")
    p.add_argument("--vocab", type=int, default=9000, help="vocabulary size V")
    p.add_argument("--dim", type=int, default=256, help="CF embedding size d")
    p.add_argument("--word-dim", type=int, default=256, help="concept size D")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--steps", type=int, default=3)
    p.add_argument("--warmup", type=int, default=1)
    p.add_argument("--json", default="", help="also write the rows to this JSON file")
    args = p.parse_args()

    common = dict(vocab=args.vocab, dim=args.dim, word_dim=args.word_dim, threads=args.threads,
                  steps=args.steps, warmup=args.warmup)
    jobs = [dict(common, stage="map", batch=args.map_batch, word_num=16, align_entities=None)]
    jobs += [dict(common, stage="align", batch=b, word_num=c, align_entities=None)
             for c in args.word_num for b in args.batch]
    jobs += [dict(common, stage="align", batch=args.map_batch, word_num=16, align_entities=k)
             for k in args.bounded]

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    header = (f"{'stage':6} {'B':>4} {'C':>3} {'L':>3} {'rows':>5} {'s/step':>8} "
              f"{'ms/entity':>9} {'peak MB':>8} {'step MB':>8}")
    print(header)
    rows = []
    ctx = mp.get_context("spawn")
    for job in jobs:
        with ctx.Pool(1) as pool:
            r = pool.apply(measure, (job,))
        rows.append(r)
        print(f"{r['stage']:6} {r['batch']:>4} {r['word_num']:>3} {r['seq_len'] or '-':>3} "
              f"{r['aligned'] or r['entities']:>5} {r['s_per_step']:>8.3f} "
              f"{r['ms_per_entity']:>9.2f} {r['peak_mb']:>8.0f} {r['step_mb']:>8.0f}", flush=True)
    full = [r for r in rows if r["stage"] == "align" and r["aligned"] == r["entities"]]
    if full:
        big = max(full, key=lambda r: (r["word_num"], r["batch"]))
        per_row = big["s_per_step"] / big["aligned"]
        print(f"\nestimate, full align at B={args.map_batch}, C={big['word_num']}: "
              f"{per_row * 3 * args.map_batch:.1f} s/step (linear in rows from B={big['batch']})")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=2)


if __name__ == "__main__":
    main()
