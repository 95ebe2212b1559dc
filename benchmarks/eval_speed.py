"""Seconds to evaluate every user by full ranking, against a plain baseline timed alongside.

    .venv/bin/python benchmarks/eval_speed.py [--dataset ml-1m] [--repeats 21] [--threads 2]

Scores come from random float32 embeddings of the dataset's shape (user [U, d], item
[I, d], d = ``--dim``, seeded); the cost does not depend on their values. Timed, one after
the other inside each repeat (so both see the same machine load):

- ``evaluator``: ``Evaluator(train, test)((user_emb, item_emb))``: ranking of all items for
  every user with a test item, training items masked, top-20, then per-user Recall@K and
  NDCG@K (K = 5, 10, 20) and their means: what the trainer runs after every epoch;
- ``evaluator_ranking``: ``Evaluator.topk`` alone (the top-20 lists, no metrics);
- ``baseline``: ``scores = user_emb @ item_embᵀ`` for all users, ``scores[train] = -inf``
  (flat indices precomputed), ``torch.topk(scores, 20)``: ranking only, no metrics.

Reported: min and median seconds over ``--repeats`` (after ``--warmup`` untimed runs), the
ratios evaluator / baseline of the medians and of the minima, whether the evaluator's
top-20 lists equal the baseline's (they should: same float32 scores, same masking), and
the machine's 1-minute load average before and after (the benchmark itself adds about its
thread count; other processes slow both sides, though not equally). Written to
``reports/benchmarks/eval_speed.json`` unless ``--no-write``.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import torch


def _stats(seconds: list[float]) -> dict[str, Any]:
    return {"min": float(np.min(seconds)), "median": float(np.median(seconds)),
            "seconds": [float(s) for s in seconds]}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dataset", default="ml-1m")
    ap.add_argument("--dim", type=int, default=64)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=21)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--no-write", action="store_true", help="do not write the JSON report")
    a = ap.parse_args(argv)
    if a.repeats < 1 or a.warmup < 0:
        print(f"error: --repeats must be >= 1 and --warmup >= 0, got {a.repeats}, {a.warmup}",
              file=sys.stderr)
        return 2
    torch.set_num_threads(a.threads)

    from facelib import paths
    from facelib.data import load_dataset
    from facelib.eval import Evaluator

    ds = load_dataset(paths.processed_dir(a.dataset))
    train, test = ds.matrix("train").tocsr(), ds.matrix("test")
    gen = torch.Generator().manual_seed(a.seed)
    user_emb = torch.randn(ds.n_users, a.dim, generator=gen)
    item_emb = torch.randn(ds.n_items, a.dim, generator=gen)
    evaluator = Evaluator(train, test)
    k = evaluator.k_max

    rows = np.repeat(np.arange(train.shape[0], dtype=np.int64), np.diff(train.indptr))
    train_flat = torch.from_numpy(rows * ds.n_items + train.indices.astype(np.int64))

    def baseline() -> torch.Tensor:
        scores = user_emb @ item_emb.T                                   # [U, I]
        scores.view(-1).index_fill_(0, train_flat, float("-inf"))
        return torch.topk(scores, k, dim=1).indices                      # [U, k]

    runs: dict[str, Callable[[], Any]] = {
        "baseline": baseline,
        "evaluator": lambda: evaluator((user_emb, item_emb)),
        "evaluator_ranking": lambda: evaluator.topk((user_emb, item_emb)),
    }
    load = [os.getloadavg()[0]]
    with torch.no_grad():
        same_lists = bool(torch.equal(baseline()[torch.from_numpy(evaluator.users)],
                                      evaluator.topk((user_emb, item_emb))))
        for _ in range(a.warmup):
            for fn in runs.values():
                fn()
        seconds: dict[str, list[float]] = {name: [] for name in runs}
        for rep in range(a.repeats):
            order = list(runs) if rep % 2 == 0 else list(reversed(runs))
            for name in order:
                t0 = time.perf_counter()
                runs[name]()
                seconds[name].append(time.perf_counter() - t0)
    load.append(os.getloadavg()[0])
    times = {name: _stats(s) for name, s in seconds.items()}
    ratios = {f"{name}_vs_baseline_{stat}": times[name][stat] / times["baseline"][stat]
              for name in ("evaluator", "evaluator_ranking") for stat in ("median", "min")}
    print(f"{a.dataset}: {len(evaluator.users)} users x {ds.n_items} items, top-{k}, "
          f"{a.threads} threads, {a.repeats} repeats (min / median seconds)")
    for name, t in times.items():
        ratio = "" if name == "baseline" else \
            f"   x{ratios[f'{name}_vs_baseline_median']:.2f} of the baseline (median)"
        print(f"  {name:<18} {t['min']:.4f} / {t['median']:.4f}{ratio}")
    print(f"  top-{k} lists equal to the baseline's: {same_lists}; 1-min load average "
          f"{load[0]:.1f} before, {load[1]:.1f} after")
    if not a.no_write:
        from facelib.io import write_json

        out = paths.reports_dir() / "benchmarks" / "eval_speed.json"
        config = {k: v for k, v in vars(a).items() if k != "no_write"}
        write_json({"config": config | {"users": len(evaluator.users), "items": ds.n_items,
                                        "k": k, "ks": list(evaluator.ks)},
                    "times": times, "ratios": ratios, "top_lists_equal_baseline": same_lists,
                    "load_average_1min": load,
                    "torch": torch.__version__, "cores": os.cpu_count()}, out)
        print(f"wrote {out.relative_to(paths.repo_root())}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
