"""Our LightGCN against ``torch_geometric.nn.models.LightGCN`` on the same problem.

    .venv/bin/python benchmarks/lightgcn_vs_pyg.py [--epochs 3] [--dataset ml-1m]

Both sides get the identical split, initial embeddings (ours, copied into PyG's table),
dimension, layers, batch size, epochs, BPR negatives and batch order (one seeded sampler),
edge-dropout masks (drawn from the same torch seed over the same edge order), Adam with
weight decay 2·reg, and sum readout (PyG's ``alpha`` set to ones; its default is the layer
mean 1/(L+1)). PyG propagates with ``LGConv`` message passing over ``edge_index`` with the
precomputed symmetric normalisation as ``edge_weight`` (``normalize=False``), so the two
compute the same function; the loss is PyG's ``recommendation_loss`` (BPR, lambda_reg 0).
``--pyg-adj sparse`` runs PyG's other CPU path instead (a torch.sparse CSR ``adj_t``
through ``LGConv.message_and_aggregate``, i.e. ``torch.sparse.mm`` with autograd).
Each side runs in its own subprocess (clean peak-memory numbers). Reported per side:
seconds per training epoch, seconds to evaluate every user (propagation + full ranking,
the same :class:`facelib.eval.Evaluator` for both), peak RSS growth during training,
test Recall@20 / NDCG@20; then the ratios ours / PyG. Results also go to
``reports/benchmarks/lightgcn_vs_pyg.json``.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import resource
import sys
import time
from typing import Any

import numpy as np
import torch


def _rss_mb() -> float:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def _peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _run(side: str, args: dict[str, Any]) -> dict[str, Any]:
    """Train and evaluate one side; runs inside a fresh subprocess."""
    torch.set_num_threads(args["threads"])
    from facelib import paths
    from facelib.data import load_dataset
    from facelib.eval import Evaluator
    from facelib.models import LightGCN
    from facelib.models.sampling import BPRSampler
    from facelib.seed import seed_everything

    ds = load_dataset(paths.processed_dir(args["dataset"]))
    train_m = ds.matrix("train")
    rng = seed_everything(args["seed"])
    ours = LightGCN(ds.n_users, ds.n_items, args["dim"], train_m, layers=args["layers"],
                    keep_rate=args["keep_rate"])
    if side == "ours":
        model: torch.nn.Module = ours
        params = list(ours.parameters())
    else:
        from torch_geometric.nn.models import LightGCN as PygLightGCN

        adj = ours.adjacency
        rows = torch.repeat_interleave(torch.arange(adj.n_nodes), adj.crow.long().diff())
        # LGConv aggregates messages x_j along edge_index[0] -> edge_index[1]: (col -> row)
        edge_index = torch.stack([adj.col.long(), rows])
        edge_weight_full = adj.values.clone()
        model = PygLightGCN(adj.n_nodes, args["dim"], args["layers"],
                            alpha=torch.ones(args["layers"] + 1), normalize=False)
        with torch.no_grad():
            model.embedding.weight.copy_(ours.ego_embeddings())
        params = list(model.parameters())
        n_users = ds.n_users

        sparse_adj = args["pyg_adj"] == "sparse"

        def pyg_graph(weight: torch.Tensor) -> tuple[Any, Any]:
            """(edge_index, edge_weight) or, for PyG's spmm path, (adj_t CSR, None)."""
            if sparse_adj:
                return adj.matrices(weight)[0], None
            return edge_index, weight

        def pyg_embeddings(weight: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            e = model.get_embedding(*pyg_graph(weight))
            return e[:n_users], e[n_users:]

    opt = torch.optim.Adam(params, lr=args["lr"], weight_decay=2 * args["reg"])
    sampler = BPRSampler(ds.train, ds.n_items)
    base_rss = _rss_mb()
    epoch_s = []
    for _ in range(args["epochs"]):
        model.train()
        t0 = time.perf_counter()
        for users, pos, neg in sampler.batches(rng, args["batch_size"]):
            if side == "ours":
                loss = ours.forward_batch(users, pos, neg).losses["bpr"]
            else:
                keep = torch.rand(adj.values.shape) < args["keep_rate"]  # same draw as ours
                label = torch.stack([torch.cat([users, users]),
                                     torch.cat([pos, neg]) + n_users])
                graph, weight = pyg_graph(edge_weight_full * keep)
                rank = model(graph, label, weight)
                pos_rank, neg_rank = rank.chunk(2)
                loss = model.recommendation_loss(pos_rank, neg_rank, lambda_reg=0.0)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        epoch_s.append(time.perf_counter() - t0)
    peak = _peak_mb()
    model.eval()
    test_eval = Evaluator(train_m, ds.matrix("test"), batch_size=args["eval_batch_size"])
    eval_s = []
    for _ in range(3):
        t0 = time.perf_counter()
        with torch.no_grad():
            embs = (ours.propagate(stochastic=False) if side == "ours"
                    else pyg_embeddings(edge_weight_full))
        metrics = test_eval(tuple(e.detach() for e in embs))
        eval_s.append(time.perf_counter() - t0)
    return {"seconds_per_epoch": float(np.median(epoch_s)), "epoch_seconds": epoch_s,
            "eval_seconds": float(np.median(eval_s)),
            "peak_rss_growth_mb": round(peak - base_rss, 1),
            "recall@20": metrics["recall@20"], "ndcg@20": metrics["ndcg@20"]}


def _child(side: str, args: dict[str, Any], queue: Any) -> None:
    try:
        queue.put(_run(side, args))
    except BaseException as exc:  # noqa: BLE001 - report to the parent
        queue.put({"error": f"{type(exc).__name__}: {exc}"})


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dataset", default="ml-1m")
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--dim", type=int, default=64)
    ap.add_argument("--layers", type=int, default=3)
    ap.add_argument("--batch-size", type=int, default=4096)
    ap.add_argument("--lr", type=float, default=0.01)
    ap.add_argument("--reg", type=float, default=1e-6)
    ap.add_argument("--keep-rate", type=float, default=0.8)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--eval-batch-size", type=int, default=2048)
    ap.add_argument("--pyg-adj", choices=("edge_index", "sparse"), default="edge_index",
                    help="PyG propagation: message passing over edge_index (default) or its "
                         "spmm path with a torch.sparse CSR adj_t")
    ap.add_argument("--no-write", action="store_true", help="do not write the JSON report")
    a = ap.parse_args(argv)
    args = {k: v for k, v in vars(a).items() if k != "no_write"}
    ctx = mp.get_context("spawn")
    results: dict[str, Any] = {}
    for side in ("ours", "pyg"):
        queue = ctx.Queue()
        proc = ctx.Process(target=_child, args=(side, args, queue))
        proc.start()
        results[side] = queue.get()
        proc.join()
        if "error" in results[side]:
            print(f"error: {side} failed: {results[side]['error']}", file=sys.stderr)
            return 1
        r = results[side]
        print(f"{side:>4}: {r['seconds_per_epoch']:.2f} s/epoch, eval {r['eval_seconds']:.3f} s, "
              f"peak RSS +{r['peak_rss_growth_mb']:.0f} MB, test recall@20 {r['recall@20']:.4f}, "
              f"ndcg@20 {r['ndcg@20']:.4f}", flush=True)
    o, p = results["ours"], results["pyg"]
    ratios = {"epoch_speedup": p["seconds_per_epoch"] / o["seconds_per_epoch"],
              "eval_speedup": p["eval_seconds"] / o["eval_seconds"],
              "memory_ratio": o["peak_rss_growth_mb"] / max(p["peak_rss_growth_mb"], 1e-9),
              "recall@20_diff": o["recall@20"] - p["recall@20"],
              "ndcg@20_diff": o["ndcg@20"] - p["ndcg@20"]}
    print(f"ours vs PyG: epoch {ratios['epoch_speedup']:.2f}x faster, evaluation "
          f"{ratios['eval_speedup']:.2f}x faster, memory x{ratios['memory_ratio']:.2f}, "
          f"recall@20 {ratios['recall@20_diff']:+.4f}, ndcg@20 {ratios['ndcg@20_diff']:+.4f}")
    if not a.no_write:
        import torch_geometric

        from facelib import paths
        from facelib.io import write_json

        suffix = "" if a.pyg_adj == "edge_index" else "_sparse"
        out = paths.reports_dir() / "benchmarks" / f"lightgcn_vs_pyg{suffix}.json"
        write_json({"config": args, "ours": o, "pyg": p, "ratios": ratios,
                    "torch": torch.__version__, "torch_geometric": torch_geometric.__version__},
                   out)
        print(f"wrote {out.relative_to(paths.repo_root())}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
