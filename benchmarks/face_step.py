"""Seconds per FACE map and align step, per aligned row, and peak memory, on the real MiniLM.

Two modes.

**Comparison** (``--baseline-src DIR``, what ``make bench-face`` runs): at the paper's sizes
(B = 256 triples, 3B = 768 entity rows, C = 16, d = D = 256, FFN 2048, V = 8,995, 2 threads)
it times, in the same run and on the same machine, the FACE code of DIR (a checkout of an
earlier commit: "today") and this tree's, each configuration in a fresh process with its
source folder first on ``sys.path``; runs are interleaved and repeated (``--repeats``), and
the summary gives medians over all timed steps. Configurations: today's defaults, this
tree's defaults, this tree with the switches that change numerics off (``bf16``,
``fast_dropout``: float32 maths, today's dropout masks), and ``FACEConfig.reference()`` of
both trees. A run during which other processes used more than ``--max-other-load`` of the
CPUs is discarded and redone after a quiet spell (the JSON keeps the discarded runs). The reference implementation's figures
(``QUOTED_REFERENCE``) are quoted beside them, not measured here. It also checks the maths:
one map and one align step from identical inputs and seeds, this tree against DIR (losses
and gradients of FACE's parameters and of the batch embeddings, relative differences)::

    git worktree add build/baseline 8e9a1e4
    .venv/bin/python benchmarks/face_step.py --baseline-src build/baseline \\
        --json reports/benchmarks/face_step_cpu.json

**Grid** (no ``--baseline-src``): this tree only, align cost against C and B, optionally on
CUDA with a baseline device timed in the same run::

    .venv/bin/python benchmarks/face_step.py --batch 8,32 --word-num 4,8,16
    python benchmarks/face_step.py --device cuda --baseline cpu --random-weights \\
        --batch 8,32,256 --json reports/benchmarks/face_step_cuda.json   # on a GPU machine

One step = ``FACE.losses`` on a batch of B (user, pos, neg) triples (3B entities) + backward
+ an Adam step over FACE's parameters and the batch embeddings, as the trainer runs it
(without the backbone). Map: L_vq + L_rec. Align: + L_align, the frozen MiniLM forward and
backward over the 3B prompt sequences of length L = 1 + 13 + 2C - 1 + 1 (or over
``--align-entities`` sampled rows). The vocabulary is the first V whole-word lowercase
tokens of MiniLM; embeddings and profiles are random, which does not change the cost.
"Peak MB" (MiB, 2^20 bytes) is the process's peak resident memory (model and libraries
included), "step MB" its growth over the set-up state.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import re
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

ROOT = Path(__file__).resolve().parent.parent

# The reference implementation (github YixinRoll/FACE, commit ccc558e) at the same sizes:
# quoted figures, NOT measured by this script.
QUOTED_REFERENCE = {
    "label": "reference implementation (YixinRoll/FACE ccc558e), quoted",
    "measured_by_this_script": False,
    "source": "measured 2026-11-30 on a quiet 2-core machine of this kind, the project's "
              "processed ML-1M split, V = 8,995, B = 256 (768 rows), C = 16, d = D = 256, "
              "2 threads",
    "rows": 768,
    "map_s_per_step": 4.01,
    "align_s_per_step": 29.0,
    "align_ms_per_row": 37.8,
    "align_peak_gb": 7.6,
}


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


def use_source(job: dict[str, Any]) -> str:
    """Put the job's source folder first on ``sys.path``; return where facelib came from."""
    src = Path(job.get("src") or ROOT).resolve()
    sys.path.insert(0, str(src))
    import facelib

    where = Path(facelib.__file__).resolve().parent.parent
    if where != src:
        raise RuntimeError(f"facelib was imported from {where}, not {src}: run the benchmark "
                           "in a fresh interpreter that has not imported facelib")
    return str(src)


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
    """(step function, FACE module, batch embeddings) for one configuration.

    ``job["config"]`` holds FACEConfig overrides and ``job["reference"]`` selects
    ``FACEConfig.reference()``; parameters, batch and profiles are seeded, so two source
    trees with the same initialisation code build identical inputs.
    """
    import torch
    import torch.nn.functional as F

    try:  # this tree's layout, then the baseline's (8e9a1e4 exported from the package)
        from facelib.systems.face.model.module import FACE, FACEConfig
    except ModuleNotFoundError:
        from facelib.systems.face import FACE, FACEConfig  # type: ignore[attr-defined,no-redef]

    dev = torch.device(job["device"])
    enc = load_encoder(job)
    vocab = sorted(
        (i for t, i in enc.tokenizer.get_vocab().items() if re.fullmatch("[a-z]+", t))
    )[: job["vocab"]]
    codebook = enc.token_embeddings[torch.tensor(vocab, device=dev)].cpu()
    b, d = job["batch"], job["dim"]
    make = FACEConfig.reference if job.get("reference") else FACEConfig
    config = make(word_num=job["word_num"], word_dim=job["word_dim"], stage=job["stage"],
                  align_entities=job["align_entities"], **job.get("config", {}))
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
    """Time one configuration (runs in its own process): per-step seconds and memory."""
    src = use_source(job)
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
    times = []
    usage = resource.getrusage(resource.RUSAGE_SELF)
    for _ in range(job["steps"]):
        start = time.perf_counter()
        step()
        sync()
        times.append(time.perf_counter() - start)
    after = resource.getrusage(resource.RUSAGE_SELF)
    seconds = sum(times) / len(times)
    b = job["batch"]
    rows = 3 * b if job["align_entities"] is None else min(3 * b, job["align_entities"])
    seq = face.prompt.lengths[0] if face.prompt is not None else None
    return {
        **{k: job[k] for k in ("device", "stage", "batch", "word_num", "word_dim", "vocab",
                               "threads", "random_weights")},
        "label": job.get("label", ""),
        "src": src,
        "entities": 3 * b,
        "aligned": rows if job["stage"] == "align" else 0,
        "seq_len": seq,
        "step_times": times,
        "s_per_step": seconds,
        # per timed step: CPU seconds of all threads, kernel part, minor page faults
        "cpu_s_per_step": (after.ru_utime + after.ru_stime - usage.ru_utime - usage.ru_stime)
        / len(times),
        "sys_s_per_step": (after.ru_stime - usage.ru_stime) / len(times),
        "page_faults_per_step": (after.ru_minflt - usage.ru_minflt) / len(times),
        "ms_per_entity": 1000 * seconds / (3 * b),
        "peak_mb": (torch.cuda.max_memory_allocated() / 2**20 if cuda else rss_mb("VmHWM")),
        "step_mb": (torch.cuda.max_memory_allocated() / 2**20 if cuda
                    else rss_mb("VmHWM") - base_mb),
    }


def profile_step(job: dict[str, Any]) -> dict[str, Any]:
    """Where one step's time goes (runs in its own process): ``torch.profiler`` self time of
    the calling thread per op, after ``job["warmup"]`` steps, the top ``job["top"]`` ops."""
    use_source(job)
    import torch
    from torch.profiler import ProfilerActivity, profile

    torch.set_num_threads(job["threads"])
    step, _, _ = build_step(job)
    for _ in range(job["warmup"]):
        step()
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        step()
    ops = sorted(prof.key_averages(), key=lambda e: -e.self_cpu_time_total)
    total = sum(e.self_cpu_time_total for e in ops)
    return {
        "label": job.get("label", ""), "stage": job["stage"], "total_ms": total / 1000,
        "top": [{"op": e.key, "calls": e.count, "self_ms": e.self_cpu_time_total / 1000,
                 "share": e.self_cpu_time_total / total} for e in ops[: job["top"]]],
    }


def one_step(job: dict[str, Any]) -> dict[str, Any]:
    """Losses and gradients (FACE's parameters, batch embeddings) of one seeded step, in
    train mode (dropout on) or not (``job["train"]``); runs in its own process."""
    src = use_source(job)
    import torch

    torch.set_num_threads(job["threads"])
    step, face, emb = build_step(job)
    face.train(job["train"])
    torch.manual_seed(job["seed"])
    losses = step()
    grads = {n: p.grad.detach().cpu().numpy() for n, p in face.named_parameters()
             if p.grad is not None}
    grads["batch embeddings"] = emb.grad.detach().cpu().numpy()
    return {"src": src, "losses": losses, "grads": grads}


def differences(new: dict[str, Any], old: dict[str, Any]) -> dict[str, Any]:
    """Largest relative differences of losses and gradients of two :func:`one_step` results."""
    import numpy as np

    if new["losses"].keys() != old["losses"].keys() or new["grads"].keys() != old["grads"].keys():
        raise RuntimeError("the two steps have different losses or parameters: compare "
                           "configurations of the same stage")
    loss = {k: abs(new["losses"][k] - v) / max(abs(v), 1e-12) for k, v in old["losses"].items()}
    grad = {k: float(np.linalg.norm(new["grads"][k] - g) / max(np.linalg.norm(g), 1e-12))
            for k, g in old["grads"].items()}
    flat_new = np.concatenate([new["grads"][k].ravel() for k in old["grads"]])
    flat_old = np.concatenate([g.ravel() for g in old["grads"].values()])
    worst = max(grad, key=grad.get)
    return {
        "max_rel_loss_diff": max(loss.values()),
        "rel_loss_diff": loss,
        "max_rel_grad_diff": grad[worst],
        "max_rel_grad_diff_tensor": worst,
        "rel_grad_diff_all": float(np.linalg.norm(flat_new - flat_old)
                                   / max(np.linalg.norm(flat_old), 1e-12)),
        "grads_compared": len(grad),
        "losses_new": new["losses"],
        "losses_baseline": old["losses"],
    }


def same_math(job: dict[str, Any]) -> dict[str, Any]:
    """Grid mode: one align step on the CPU and on ``job["device"]`` from identical inputs:
    the largest relative difference of the losses and of the gradients."""
    import torch

    use_source(job)
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
            "cores": os.cpu_count(), "cpu_capability": torch.backends.cpu.get_cpu_capability()}
    try:
        with open("/proc/cpuinfo") as f:
            flags = next((line for line in f if line.startswith("flags")), "").split()
        info["avx512_bf16"] = "avx512_bf16" in flags
        info["amx_bf16"] = "amx_bf16" in flags
    except OSError:
        pass
    if device.startswith("cuda"):
        info["gpu"] = torch.cuda.get_device_name(0)
    return info


def run_job(job: dict[str, Any], fn: Any = None) -> Any:
    """Run ``fn(job)`` (default: :func:`measure`) in a fresh process."""
    with mp.get_context("spawn").Pool(1) as pool:
        return pool.apply(fn or measure, (job,))


def busy_cpu_seconds() -> float:
    """CPU seconds all processes of the machine have used since boot (``/proc/stat``)."""
    with open("/proc/stat") as f:
        fields = [int(v) for v in f.readline().split()[1:]]
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)  # idle + iowait
    return (sum(fields[:8]) - idle) / os.sysconf("SC_CLK_TCK")


def own_cpu_seconds() -> float:
    """CPU seconds of this process and its reaped children (the finished job processes)."""
    me, kids = (resource.getrusage(w) for w in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN))
    return me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime


def wait_quiet(limit_s: float, busy: float = 0.1, window_s: int = 3) -> bool:
    """Wait (at most ``limit_s``) until other processes use under ``busy`` of the machine's
    CPUs for ``window_s`` seconds in a row; True when that happened."""
    start, calm = time.time(), 0
    while time.time() - start < limit_s:
        before, mine = busy_cpu_seconds(), own_cpu_seconds()
        time.sleep(1)
        other = busy_cpu_seconds() - before - (own_cpu_seconds() - mine)
        calm = calm + 1 if other < busy * (os.cpu_count() or 1) else 0
        if calm >= window_s:
            return True
    return False


def timed_job(job: dict[str, Any], args: argparse.Namespace) -> dict[str, Any]:
    """:func:`measure` in a fresh process, with the share of the machine's CPU time that
    other processes used meanwhile (``other_load``); with ``--max-other-load`` a run that
    shared the machine more than that is discarded and redone after a quiet spell (at most
    ``--retries`` times; discarded runs are kept under ``discarded``)."""
    discarded = []
    for attempt in range(args.retries + 1):
        if args.max_other_load < 1:
            wait_quiet(args.quiet_wait)
        busy, mine, start = busy_cpu_seconds(), own_cpu_seconds(), time.time()
        r = run_job(job)
        other = busy_cpu_seconds() - busy - (own_cpu_seconds() - mine)
        r["other_load"] = max(other, 0.0) / ((time.time() - start) * (os.cpu_count() or 1))
        if r["other_load"] <= args.max_other_load or attempt == args.retries:
            r["discarded"] = discarded
            return r
        discarded.append({k: r[k] for k in ("step_times", "other_load")})
        print(f"    (discarded: other processes used {r['other_load']:.0%} of the CPUs)",
              flush=True)
    raise AssertionError("unreachable")


def git_commit(folder: str) -> str:
    """The commit checked out in ``folder``, with "+changes" when its ``facelib/`` or
    ``benchmarks/`` differ from it (the code that runs; written reports do not count)."""
    def git(*args: str) -> str:
        return subprocess.run(["git", "-C", folder, *args], capture_output=True, text=True,
                              check=False).stdout.strip()

    commit = git("rev-parse", "--short", "HEAD") or "unknown"
    changed = git("status", "--porcelain", "--", "facelib", "benchmarks")
    return commit + ("+changes" if changed else "")


# ---------------------------------------------------------------------------- comparison
def comparison_configs(baseline_src: str) -> list[dict[str, Any]]:
    """The timed configurations: (label, src, FACEConfig overrides, reference)."""
    return [
        {"label": "today", "src": baseline_src, "config": {}, "reference": False},
        {"label": "new", "src": None, "config": {}, "reference": False},
        {"label": "new, float32", "src": None,
         "config": {"bf16": False, "fast_dropout": False}, "reference": False},
        {"label": "today, reference()", "src": baseline_src, "config": {}, "reference": True},
        {"label": "new, reference()", "src": None, "config": {}, "reference": True},
    ]


def math_checks(common: dict[str, Any], baseline_src: str) -> list[dict[str, Any]]:
    """One seeded map and align step of this tree against the baseline's default config.

    float32 (every speed switch off) and bf16 alone run in train mode: the concept layers'
    dropout draws the same masks as the baseline's, so only the maths can differ. This
    tree's defaults run with dropout off (eval mode) when ``fast_dropout`` is on, since it
    draws other masks by design.
    """
    from facelib.systems.face.model.module import FACEConfig

    fast = FACEConfig().fast_dropout
    variants = [
        ("float32 (bf16=False, fast_dropout=False), train mode",
         {"bf16": False, "fast_dropout": False}, True),
        ("bf16=True, fast_dropout=False, train mode", {"bf16": True, "fast_dropout": False}, True),
        (f"defaults{' (dropout off: eval mode)' if fast else ', train mode'}", {}, not fast),
    ]
    out = []
    for stage in ("map", "align"):
        base = {**common, "stage": stage, "batch": common["map_batch"], "word_num": 16,
                "align_entities": None, "seed": 7}
        baseline = {}
        for label, overrides, train in variants:
            if train not in baseline:
                baseline[train] = run_job({**base, "src": baseline_src, "config": {},
                                           "train": train}, one_step)
            new = run_job({**base, "src": None, "config": overrides, "train": train}, one_step)
            diff = differences(new, baseline[train])
            out.append({"stage": stage, "check": label, "config": overrides, "train": train,
                        **diff})
            print(f"  {stage:5} {label:55} losses {diff['max_rel_loss_diff']:.1e}  gradients "
                  f"{diff['max_rel_grad_diff']:.1e} (worst: {diff['max_rel_grad_diff_tensor']}),"
                  f" all together {diff['rel_grad_diff_all']:.1e}", flush=True)
    return out


def summarise(runs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per (label, stage): medians over every timed step of every repeat, and the ratios."""
    keys = list(dict.fromkeys((r["label"], r["stage"]) for r in runs))
    rows = []
    for label, stage in keys:
        mine = [r for r in runs if r["label"] == label and r["stage"] == stage]
        steps = [t for r in mine for t in r["step_times"]]
        seconds = statistics.median(steps)
        aligned = mine[0]["aligned"] or mine[0]["entities"]
        rows.append({
            "label": label, "stage": stage, "rows": aligned, "runs": len(mine),
            "steps_timed": len(steps),
            "s_per_step": seconds,
            "ms_per_row": 1000 * seconds / aligned,
            "run_means": [r["s_per_step"] for r in mine],
            "peak_mb": statistics.median(r["peak_mb"] for r in mine),
            "step_mb": statistics.median(r["step_mb"] for r in mine),
            "cpu_s_per_step": statistics.median(r["cpu_s_per_step"] for r in mine),
            "sys_s_per_step": statistics.median(r["sys_s_per_step"] for r in mine),
            "page_faults_per_step": statistics.median(r["page_faults_per_step"] for r in mine),
            "other_load_max": max(r.get("other_load", 0.0) for r in mine),
            "discarded_runs": sum(len(r.get("discarded", [])) for r in mine),
        })
    today = {(r["label"], r["stage"]): r for r in rows if r["label"].startswith("today")}
    quoted = {"map": QUOTED_REFERENCE["map_s_per_step"],
              "align": QUOTED_REFERENCE["align_s_per_step"]}
    for r in rows:
        # against today's run of the same configuration (reference() against reference())
        same = "today, reference()" if r["label"].endswith("reference()") else "today"
        if (same, r["stage"]) in today:
            r["vs_today_label"] = same
            r["speedup_vs_today"] = today[same, r["stage"]]["s_per_step"] / r["s_per_step"]
        if r["rows"] == QUOTED_REFERENCE["rows"]:  # the quoted figures are for 768 rows
            r["speedup_vs_quoted_reference"] = quoted[r["stage"]] / r["s_per_step"]
    return rows


def print_summary(rows: list[dict[str, Any]]) -> None:
    q = QUOTED_REFERENCE
    print(f"\n{'configuration':34} {'stage':5} {'rows':>4} {'s/step':>7} {'ms/row':>7} "
          f"{'peak MiB':>8} {'vs today':>8} {'vs ref':>7}")
    for r in rows:
        vs_today = f"{r['speedup_vs_today']:.2f}x" if "speedup_vs_today" in r else "-"
        vs_ref = (f"{r['speedup_vs_quoted_reference']:.2f}x"
                  if "speedup_vs_quoted_reference" in r else "-")
        print(f"{r['label']:34} {r['stage']:5} {r['rows']:>4} {r['s_per_step']:>7.2f} "
              f"{r['ms_per_row']:>7.2f} {r['peak_mb']:>8.0f} {vs_today:>8} {vs_ref:>7}")
    print(f"{'reference implementation (quoted)':34} {'map':5} {768:>4} "
          f"{q['map_s_per_step']:>7.2f} {'-':>7} {'-':>8} {'-':>8} {'1.00x':>7}")
    print(f"{'reference implementation (quoted)':34} {'align':5} {768:>4} "
          f"{q['align_s_per_step']:>7.2f} {q['align_ms_per_row']:>7.2f} "
          f"{str(q['align_peak_gb']) + ' GB':>8} {'-':>8} {'1.00x':>7}")
    print("(medians over all timed steps; 'vs today' = today's time of the same configuration "
          "over this one (reference() against today's reference()); 'vs ref' = the quoted "
          "reference implementation's time over this one; its figures are quoted, not measured "
          "here)")


def comparison_main(args: argparse.Namespace) -> None:
    baseline_src = str(Path(args.baseline_src).resolve())
    if not (Path(baseline_src) / "facelib" / "systems" / "face").is_dir():
        raise SystemExit(f"--baseline-src {args.baseline_src} has no facelib/systems/face: "
                         "check out the baseline there, e.g. `git worktree add --detach "
                         "build/baseline 8e9a1e4` (make bench-face does)")
    common = {"vocab": args.vocab, "dim": args.dim, "word_dim": args.word_dim,
              "threads": args.threads, "warmup": args.warmup,
              "random_weights": args.random_weights, "model_dir": args.model_dir,
              "device": "cpu", "map_batch": args.map_batch}
    configs = comparison_configs(baseline_src)
    if args.only:
        configs = [c for c in configs if c["label"] in args.only.split(",")]
    commits = {"baseline": git_commit(baseline_src), "new": git_commit(str(ROOT))}
    print(f"baseline: {baseline_src} ({commits['baseline']}); new: {ROOT} ({commits['new']}); "
          f"B={args.map_batch}, C=16, V={args.vocab}, {args.threads} threads", flush=True)
    runs = []
    for repeat in range(args.repeats):
        for stage, steps in (("map", args.map_steps), ("align", args.align_steps)):
            for cfg in configs:
                job = {**common, **cfg, "stage": stage, "batch": args.map_batch, "word_num": 16,
                       "align_entities": None, "steps": steps}
                load = os.getloadavg()[0]
                r = timed_job(job, args)
                r.update(repeat=repeat, load_before=load, load_after=os.getloadavg()[0])
                runs.append(r)
                print(f"  run {repeat} {cfg['label']:18} {stage:5} "
                      f"{' '.join(f'{t:.2f}' for t in r['step_times'])} s/step, peak "
                      f"{r['peak_mb']:.0f} MB (others used {r['other_load']:.0%} of the CPUs)",
                      flush=True)
    rows = summarise(runs)
    print_summary(rows)
    profiles = []
    if args.profile_top > 0:
        print("\nprofile of one step (self time of the calling thread per op)")
        for cfg in configs:
            if cfg["label"] not in ("today", "new"):
                continue
            for stage in ("map", "align"):
                job = {**common, **cfg, "stage": stage, "batch": args.map_batch, "word_num": 16,
                       "align_entities": None, "top": args.profile_top}
                wait_quiet(args.quiet_wait)
                prof = run_job(job, profile_step)
                profiles.append(prof)
                print(f"  {cfg['label']:6} {stage:5} " + ", ".join(
                    f"{o['op']} {o['share']:.0%}" for o in prof["top"][:6]), flush=True)
    checks = None
    if not args.skip_math:
        print("\nmaths: one seeded step, this tree against the baseline (relative differences)")
        use_source({"src": None})
        checks = math_checks(common, baseline_src)
    if args.json:
        out = {
            "machine": machine("cpu"),
            "args": vars(args),
            "baseline": {"src": args.baseline_src, "commit": commits["baseline"]},
            "new": {"commit": commits["new"]},
            "sizes": {"B": args.map_batch, "rows": 3 * args.map_batch, "C": 16,
                      "d": args.dim, "D": args.word_dim, "ffn": 2048, "V": args.vocab,
                      "threads": args.threads},
            "quoted_reference": QUOTED_REFERENCE,
            "summary": rows,
            "math_check": checks,
            "profile": profiles,
            "runs": runs,
        }
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        with open(args.json, "w") as f:
            json.dump(out, f, indent=2)
        print(f"\nwrote {args.json}")


# ---------------------------------------------------------------------------- grid
def grid_main(args: argparse.Namespace) -> None:
    common = dict(vocab=args.vocab, dim=args.dim, word_dim=args.word_dim, threads=args.threads,
                  steps=args.map_steps, warmup=args.warmup, random_weights=args.random_weights,
                  model_dir=args.model_dir)
    jobs = [dict(common, stage="map", batch=args.map_batch, word_num=16, align_entities=None)]
    jobs += [dict(common, stage="align", batch=b, word_num=c, align_entities=None)
             for c in args.word_num for b in args.batch]
    jobs += [dict(common, stage="align", batch=args.map_batch, word_num=16, align_entities=k)
             for k in args.bounded]

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


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--baseline-src", default="",
                   help="comparison mode: a checkout of the earlier FACE code to time against")
    p.add_argument("--repeats", type=int, default=3, help="comparison: interleaved repeats")
    p.add_argument("--align-steps", type=int, default=2, help="comparison: timed align steps")
    p.add_argument("--only", default="", help="comparison: comma-separated labels to time")
    p.add_argument("--skip-math", action="store_true", help="comparison: no maths check")
    p.add_argument("--max-other-load", type=float, default=0.1,
                   help="comparison: redo a run during which other processes used more than "
                   "this share of the CPUs (1 = never redo)")
    p.add_argument("--retries", type=int, default=5, help="comparison: redos per run at most")
    p.add_argument("--profile-top", type=int, default=15,
                   help="comparison: profile one step of today and new (this many ops; 0: no)")
    p.add_argument("--quiet-wait", type=float, default=900,
                   help="comparison: seconds to wait for a quiet machine before each run")
    p.add_argument("--batch", type=ints, default=[8, 32], help="grid: align batch sizes B")
    p.add_argument("--word-num", type=ints, default=[4, 8, 16], help="grid: C values for align")
    p.add_argument("--bounded", type=ints, default=[64],
                   help="grid: align_entities bounds timed at B = --map-batch, C = 16")
    p.add_argument("--map-batch", type=int, default=256, help="B of the map step (paper 256)")
    p.add_argument("--vocab", type=int, default=8995, help="vocabulary size V")
    p.add_argument("--dim", type=int, default=256, help="CF embedding size d")
    p.add_argument("--word-dim", type=int, default=256, help="concept size D")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--map-steps", "--steps", type=int, default=3, dest="map_steps",
                   help="timed map steps (grid: every configuration)")
    p.add_argument("--warmup", type=int, default=1)
    p.add_argument("--device", default="cpu", help="grid: cpu | cuda")
    p.add_argument("--baseline", default="", help="grid: also time each configuration on "
                   "this device (e.g. cpu) in the same run and report the speed-up")
    p.add_argument("--baseline-max-rows", type=int, default=96,
                   help="grid: time on the baseline device only configurations aligning <= "
                   "this many rows")
    p.add_argument("--random-weights", action="store_true",
                   help="MiniLM architecture with random weights (same cost; no weights file)")
    p.add_argument("--model-dir", default="", help="folder with MiniLM's config + tokenizer")
    p.add_argument("--json", default="", help="also write the results to this JSON file")
    args = p.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    if args.baseline_src:
        comparison_main(args)
    else:
        grid_main(args)


if __name__ == "__main__":
    main()
