"""Seconds per FACE map and align step, per entity, and peak memory, on the real MiniLM.

    .venv/bin/python benchmarks/face_step.py                 # small grid, ~2-4 min on 2 cores
    .venv/bin/python benchmarks/face_step.py --batch 8,32,256 --word-num 8,16 --steps 5
    .venv/bin/python benchmarks/face_step.py --json reports/benchmarks/face_step_cpu.json
    python benchmarks/face_step.py --device cuda --baseline cpu --random-weights \
        --batch 8,32,256 --json reports/benchmarks/face_step_cuda.json   # on a GPU machine

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
from pathlib import Path
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


def load_encoder(job: dict[str, Any]) -> Any:
    """The frozen MiniLM on ``job["device"]``: the packaged weights, or (``random_weights``)
    the same architecture and tokenizer with seeded random weights, which costs the same
    per step (for machines without the weights package; the CUDA run uses it)."""
    from facelib.text.encoder import FrozenEncoder

    if not job["random_weights"]:
        return FrozenEncoder.load(job["device"])
    import torch
    from transformers import AutoConfig, AutoModel, AutoTokenizer

    from facelib.text.encoder import model_path

    folder = job["model_dir"] or str(model_path())
    torch.manual_seed(0)
    model = AutoModel.from_config(AutoConfig.from_pretrained(folder))
    tokenizer = AutoTokenizer.from_pretrained(folder)
    dev = torch.device(job["device"])
    return FrozenEncoder(model.to(dev), tokenizer, dev, Path(folder))


def build_step(job: dict[str, Any]) -> tuple[Any, Any, Any]:
    """(step function, FACE module, batch embeddings) for one configuration."""
    import torch
    import torch.nn.functional as F

    from facelib.systems.face.model.module import FACE, FACEConfig

    dev = torch.device(job["device"])
    enc = load_encoder(job)
    vocab = sorted(
        (i for t, i in enc.tokenizer.get_vocab().items() if re.fullmatch("[a-z]+", t))
    )[: job["vocab"]]
    codebook = enc.token_embeddings[torch.tensor(vocab, device=dev)].cpu()
    b, d = job["batch"], job["dim"]
    config = FACEConfig(word_num=job["word_num"], word_dim=job["word_dim"], stage=job["stage"],
                        align_entities=job["align_entities"])
    g = torch.Generator().manual_seed(1)
    profiles = F.normalize(torch.randn(b, enc.dim, generator=g), dim=-1)
    kw = dict(encoder=enc, user_profiles=profiles, item_profiles=profiles)
    torch.manual_seed(0)
    face = FACE(config, d, codebook, **(kw if job["stage"] == "align" else {})).to(dev)
    face.train()
    emb = torch.randn(3, b, d, generator=g).to(dev).requires_grad_(True)
    opt = torch.optim.Adam([*face.parameters(), emb], lr=1e-3)
    ids = torch.arange(b, device=dev)

    def step() -> dict[str, float]:
        out = SimpleNamespace(user_emb=emb[0], pos_emb=emb[1], neg_emb=emb[2])
        losses = face.losses(out, ids, ids, ids)
        opt.zero_grad()
        sum(losses.values()).backward()
        opt.step()
        return {k: float(v.detach()) for k, v in losses.items()}

    return step, face, emb


def measure(job: dict[str, Any]) -> dict[str, Any]:
    """Time one configuration (runs in its own process)."""
    import torch

    torch.set_num_threads(job["threads"])
    cuda = job["device"].startswith("cuda")
    step, face, _ = build_step(job)
    base_mb = rss_mb("VmRSS")
    if cuda:
        torch.cuda.reset_peak_memory_stats()

    def sync() -> None:
        if cuda:
            torch.cuda.synchronize()

    for _ in range(job["warmup"]):
        step()
    sync()
    start = time.perf_counter()
    for _ in range(job["steps"]):
        step()
    sync()
    seconds = (time.perf_counter() - start) / job["steps"]
    b = job["batch"]
    rows = 3 * b if job["align_entities"] is None else min(3 * b, job["align_entities"])
    seq = face.prompt.lengths[0] if face.prompt is not None else None
    return {
        **{k: job[k] for k in ("device", "stage", "batch", "word_num", "word_dim", "vocab",
                               "threads", "random_weights")},
        "entities": 3 * b,
        "aligned": rows if job["stage"] == "align" else 0,
        "seq_len": seq,
        "s_per_step": seconds,
        "ms_per_entity": 1000 * seconds / (3 * b),
        "peak_mb": (torch.cuda.max_memory_allocated() / 2**20 if cuda else rss_mb("VmHWM")),
        "step_mb": (torch.cuda.max_memory_allocated() / 2**20 if cuda
                    else rss_mb("VmHWM") - base_mb),
    }


def same_math(job: dict[str, Any]) -> dict[str, Any]:
    """One align step on the CPU and on ``job["device"]`` from identical inputs: the largest
    relative difference of the losses and of the gradients of FACE's parameters and of the
    batch embeddings (float32 rounding only, if the device runs the same math)."""
    import torch

    torch.set_num_threads(job["threads"])
    result = {}
    for dev in ("cpu", job["device"]):
        step, face, emb = build_step({**job, "device": dev, "align_entities": None})
        face.eval()  # dropout off: its random masks differ between devices
        losses = step()
        grads = {n: p.grad.detach().cpu() for n, p in face.named_parameters()
                 if p.grad is not None}
        grads["batch embeddings"] = emb.grad.detach().cpu()
        result[dev] = (losses, grads)
    (l_cpu, g_cpu), (l_dev, g_dev) = result["cpu"], result[job["device"]]
    loss_diff = max(abs(l_cpu[k] - l_dev[k]) / max(abs(l_cpu[k]), 1e-12) for k in l_cpu)
    grad_diff = max(float((g_cpu[k] - g_dev[k]).norm() / max(float(g_cpu[k].norm()), 1e-12))
                    for k in g_cpu)
    return {"losses_cpu": l_cpu, "losses_device": l_dev, "max_rel_loss_diff": loss_diff,
            "max_rel_grad_diff": grad_diff, "grads_compared": len(g_cpu)}


def ints(text: str) -> list[int]:
    return [int(v) for v in text.split(",") if v]


def machine(device: str) -> dict[str, Any]:
    import platform

    import torch

    info = {"torch": torch.__version__, "cpu": platform.processor() or platform.machine(),
            "cores": os.cpu_count()}
    if device.startswith("cuda"):
        info["gpu"] = torch.cuda.get_device_name(0)
    return info


def run_job(job: dict[str, Any], fn: Any = None) -> Any:
    """Run ``fn(job)`` (default: :func:`measure`) in a fresh process."""
    with mp.get_context("spawn").Pool(1) as pool:
        return pool.apply(fn or measure, (job,))


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
    p.add_argument("--device", default="cpu", help="cpu | cuda")
    p.add_argument("--baseline", default="", help="also time each configuration on this "
                   "device (e.g. cpu) in the same run and report the speed-up")
    p.add_argument("--baseline-max-rows", type=int, default=96,
                   help="time on the baseline only configurations aligning <= this many rows")
    p.add_argument("--random-weights", action="store_true",
                   help="MiniLM architecture with random weights (same cost; no weights file)")
    p.add_argument("--model-dir", default="", help="folder with MiniLM's config + tokenizer")
    p.add_argument("--json", default="", help="also write the results to this JSON file")
    args = p.parse_args()

    common = dict(vocab=args.vocab, dim=args.dim, word_dim=args.word_dim, threads=args.threads,
                  steps=args.steps, warmup=args.warmup, random_weights=args.random_weights,
                  model_dir=args.model_dir)
    jobs = [dict(common, stage="map", batch=args.map_batch, word_num=16, align_entities=None)]
    jobs += [dict(common, stage="align", batch=b, word_num=c, align_entities=None)
             for c in args.word_num for b in args.batch]
    jobs += [dict(common, stage="align", batch=args.map_batch, word_num=16, align_entities=k)
             for k in args.bounded]

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    header = (f"{'device':6} {'stage':6} {'B':>4} {'C':>3} {'L':>3} {'rows':>5} {'s/step':>8} "
              f"{'ms/entity':>9} {'peak MB':>8} {'step MB':>8}")
    print(header)
    rows = []
    for job in jobs:
        devices = [args.device]
        aligned = (3 * job["batch"] if job["align_entities"] is None
                   else min(3 * job["batch"], job["align_entities"]))
        if args.baseline and (job["stage"] == "map" or aligned <= args.baseline_max_rows):
            devices.append(args.baseline)
        timed = {}
        for dev in devices:
            r = run_job({**job, "device": dev})
            timed[dev] = r
            rows.append(r)
            print(f"{dev:6} {r['stage']:6} {r['batch']:>4} {r['word_num']:>3} "
                  f"{r['seq_len'] or '-':>3} {r['aligned'] or r['entities']:>5} "
                  f"{r['s_per_step']:>8.3f} {r['ms_per_entity']:>9.2f} {r['peak_mb']:>8.0f} "
                  f"{r['step_mb']:>8.0f}", flush=True)
        if len(timed) == 2:
            ratio = timed[args.baseline]["s_per_step"] / timed[args.device]["s_per_step"]
            timed[args.device]["speedup_vs_baseline"] = ratio
            print(f"{'':6} speed-up of {args.device} over {args.baseline}: {ratio:.1f}x")
    full = [r for r in rows if r["stage"] == "align" and r["aligned"] == r["entities"]
            and r["device"] == args.device]
    if full:
        big = max(full, key=lambda r: (r["word_num"], r["batch"]))
        per_row = big["s_per_step"] / big["aligned"]
        print(f"\nestimate, full align at B={args.map_batch}, C={big['word_num']} on "
              f"{args.device}: {per_row * 3 * args.map_batch:.2f} s/step (linear in rows from "
              f"B={big['batch']})")
    check = None
    if args.device != "cpu":
        check = run_job(dict(common, stage="align", batch=8, word_num=16, align_entities=None,
                             device=args.device), same_math)
        print(f"\nsame math on cpu and {args.device} (one align step, B=8, C=16): max relative "
              f"difference {check['max_rel_loss_diff']:.2e} in the losses, "
              f"{check['max_rel_grad_diff']:.2e} in {check['grads_compared']} gradients")
    if args.json:
        out = {"machine": machine(args.device), "args": vars(args), "rows": rows,
               "math_check": check}
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        with open(args.json, "w") as f:
            json.dump(out, f, indent=2)


if __name__ == "__main__":
    main()
