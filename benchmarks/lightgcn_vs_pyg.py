"""Our LightGCN against ``torch_geometric.nn.models.LightGCN`` on the same problem.

    .venv/bin/python benchmarks/lightgcn_vs_pyg.py [--epochs 3] [--dataset ml-1m]

One process trains our model and PyG's side by side, step by step: every mini-batch is
run by each model in turn (rotating which goes first), so machine load hits both alike and
the ratio of their summed step times is robust where absolute seconds are not. Both get
the identical split, initial embeddings (ours, copied into PyG's table), dimension,
layers, batch size, BPR negatives and batch order (one seeded sampler, drawn once per
epoch for all models), Adam with weight decay 2·reg, and sum readout (PyG's ``alpha`` set
to ones; its default is the layer mean 1/(L+1)); the loss is PyG's
``recommendation_loss`` (BPR, lambda_reg 0). The first step's losses are compared
(``first_loss``) to show that the two compute the same function.

PyG runs on its fastest CPU path: ``LGConv`` with a precomputed, normalised sparse
adjacency ``adj_t`` (``normalize=False``), i.e. fused ``message_and_aggregate`` =
``torch.sparse.mm`` with autograd. The normalisation is PyG's ``gcn_norm``, computed once
(checked equal to ours). ``--pyg-adj`` picks the adjacency forms (several are timed side
by side; ``torch_sparse.SparseTensor`` would need ``torch-sparse``, not a dependency):

- ``csr``: ``to_torch_csr_tensor`` (int64 indices), PyG's own conversion;
- ``csr32``: the same CSR with int32 indices (the form our model uses);
- ``edge_index``: message passing (gather / scatter-add) over ``edge_index`` with the
  precomputed ``edge_weight``: PyG's generic path, slow on the CPU.

Two settings, each from the same initial state: edge dropout off (keep rate 1, the
headline) and on (``--keep-rate``, one fresh mask per batch, identical for all models:
torch's RNG state is replayed for each model's draw; kept values are not rescaled). The
sampler runs outside the timed steps; ``--warmup-steps`` untimed steps (the same batches
for every model) precede the timed epochs. Reported per setting and model: seconds per
epoch of training steps (median over epochs), seconds to evaluate every user (propagation
+ full ranking with the same :class:`facelib.eval.Evaluator`, median of 3), test
Recall@20 / NDCG@20 after the last epoch; then PyG / ours: the median over epochs of the
per-epoch ratio (the headline figure), each epoch's ratio, and the evaluation ratio; and
the machine's 1-minute load average after each epoch (the benchmark itself adds about
its thread count; other processes slow both sides and pull the ratio towards 1). Written
to ``reports/benchmarks/lightgcn_vs_pyg.json`` unless ``--no-write``.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
import warnings
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from torch import Tensor

PYG_ADJ = ("csr", "csr32", "edge_index")


class _Side:
    """One model being trained: how to run a step, and how to get eval embeddings."""

    def __init__(self, name: str, model: torch.nn.Module, args: dict[str, Any],
                 step: Callable[[Tensor, Tensor, Tensor, float], Tensor],
                 embeddings: Callable[[], tuple[Tensor, Tensor]]) -> None:
        self.name, self.model = name, model
        self.opt = torch.optim.Adam(model.parameters(), lr=args["lr"],
                                    weight_decay=2 * args["reg"])
        self.step_fn, self.embeddings = step, embeddings
        self.epoch_s: list[float] = []
        self.first_loss: float | None = None

    def step(self, users: Tensor, pos: Tensor, neg: Tensor, keep_rate: float) -> float:
        t0 = time.perf_counter()
        loss = self.step_fn(users, pos, neg, keep_rate)
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        self.opt.step()
        elapsed = time.perf_counter() - t0
        if self.first_loss is None:
            self.first_loss = float(loss.detach())
        return elapsed


def _build(args: dict[str, Any], ds: Any, keep_rate: float) -> list[_Side]:
    """Our model and one PyG model per ``args["pyg_adj"]`` form, all from one initial state."""
    from torch_geometric.nn.conv.gcn_conv import gcn_norm
    from torch_geometric.nn.models import LightGCN as PygLightGCN
    from torch_geometric.utils import to_torch_csr_tensor

    from facelib.models import LightGCN

    torch.manual_seed(args["seed"])
    ours = LightGCN(ds.n_users, ds.n_items, args["dim"], ds.matrix("train"),
                    layers=args["layers"], keep_rate=keep_rate)
    adj = ours.adjacency
    n, n_users = adj.n_nodes, ds.n_users
    rows = torch.repeat_interleave(torch.arange(n), adj.crow.long().diff())
    # row-major edge list of A (its structure is symmetric); LGConv's edge_index carries
    # messages edge_index[0] -> edge_index[1], i.e. (col -> row) for out = Â x
    edge_index = torch.stack([adj.col.long(), rows])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # "sparse CSR support is in beta"
        _, weight = gcn_norm(edge_index, None, n, add_self_loops=False)
        csr64 = to_torch_csr_tensor(torch.stack([rows, adj.col.long()]), weight, (n, n),
                                    is_coalesced=True)
    if not torch.allclose(weight, adj.values, rtol=1e-5, atol=0):
        raise RuntimeError("PyG's gcn_norm differs from our normalisation")
    if not torch.equal(csr64.col_indices(), adj.col.long()):
        raise RuntimeError("PyG's CSR orders the nonzeros differently from ours")
    crow = {"csr": csr64.crow_indices(), "csr32": adj.crow}
    col = {"csr": csr64.col_indices(), "csr32": adj.col}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # "sparse CSR support is in beta"
        fixed = {f: torch.sparse_csr_tensor(crow[f], col[f], weight, (n, n)) for f in crow}

    def ours_step(users: Tensor, pos: Tensor, neg: Tensor, keep: float) -> Tensor:
        return ours.forward_batch(users, pos, neg).losses["bpr"]

    sides = [_Side("ours", ours, args, ours_step,
                   lambda: ours.propagate(stochastic=False))]
    for form in args["pyg_adj"]:
        model = PygLightGCN(n, args["dim"], args["layers"],
                            alpha=torch.ones(args["layers"] + 1), normalize=False)
        with torch.no_grad():
            model.embedding.weight.copy_(ours.ego_embeddings())

        def graph(keep: float, form: str = form) -> tuple[Any, Tensor | None]:
            """(adj_t, None) or (edge_index, edge_weight) with a dropout mask drawn as
            ``NormalizedAdjacency.dropout_values`` draws it."""
            w = weight if keep >= 1.0 else weight * (torch.rand(weight.shape) < keep)
            if form == "edge_index":
                return edge_index, w
            if keep >= 1.0:
                return fixed[form], None
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", UserWarning)
                return torch.sparse_csr_tensor(crow[form], col[form], w, (n, n)), None

        def pyg_step(users: Tensor, pos: Tensor, neg: Tensor, keep: float,
                     model: Any = model, graph: Any = graph) -> Tensor:
            label = torch.stack([torch.cat([users, users]), torch.cat([pos, neg]) + n_users])
            g, w = graph(keep)
            rank = model(g, label, w)
            pos_rank, neg_rank = rank.chunk(2)
            return model.recommendation_loss(pos_rank, neg_rank, lambda_reg=0.0)

        def pyg_embeddings(model: Any = model, graph: Any = graph) -> tuple[Tensor, Tensor]:
            e = model.get_embedding(*graph(1.0))
            return e[:n_users], e[n_users:]

        sides.append(_Side(f"pyg_{form}", model, args, pyg_step, pyg_embeddings))
    return sides


def _run_setting(args: dict[str, Any], ds: Any, keep_rate: float) -> dict[str, Any]:
    """Train all sides side by side for ``args["epochs"]`` epochs; time and evaluate them."""
    from facelib.eval import Evaluator
    from facelib.models.sampling import BPRSampler

    sides = _build(args, ds, keep_rate)
    sampler = BPRSampler(ds.train, ds.n_items)
    rng = np.random.default_rng(args["seed"])
    for side in sides:
        side.model.train()
    # warm-up: the first steps of a process are slow (allocations, lazy initialisation);
    # every model trains on the same untimed batches before the timed epochs
    warm = list(sampler.batches(rng, args["batch_size"]))[: args["warmup_steps"]]
    for users, pos, neg in warm:
        state = torch.get_rng_state()
        for side in sides:
            torch.set_rng_state(state)
            side.step(users, pos, neg, keep_rate)
    step, load = 0, []
    for _ in range(args["epochs"]):
        batches = list(sampler.batches(rng, args["batch_size"]))
        if args["max_steps"]:
            batches = batches[: args["max_steps"]]
        spent = {s.name: 0.0 for s in sides}
        for users, pos, neg in batches:
            state = torch.get_rng_state()  # the same dropout mask for every side
            order = sides[step % len(sides):] + sides[: step % len(sides)]
            for side in order:
                torch.set_rng_state(state)
                spent[side.name] += side.step(users, pos, neg, keep_rate)
            step += 1
        for side in sides:
            side.epoch_s.append(spent[side.name])
        load.append(os.getloadavg()[0])
        print(f"  keep {keep_rate:g}, epoch {len(sides[0].epoch_s)}: "
              + ", ".join(f"{k} {v:.2f} s" for k, v in spent.items())
              + f" (1-min load average {load[-1]:.1f})", flush=True)
    test_eval = Evaluator(ds.matrix("train"), ds.matrix("test"))
    eval_s: dict[str, list[float]] = {s.name: [] for s in sides}
    metrics: dict[str, dict[str, float]] = {}
    for side in sides:
        side.model.eval()
    for _ in range(3):
        for side in sides:
            t0 = time.perf_counter()
            with torch.no_grad():
                embs = side.embeddings()
            metrics[side.name] = test_eval(tuple(e.detach() for e in embs))
            eval_s[side.name].append(time.perf_counter() - t0)
    out: dict[str, Any] = {"keep_rate": keep_rate, "steps_per_epoch": len(batches),
                           "load_average_1min": load}
    for side in sides:
        out[side.name] = {"seconds_per_epoch": float(np.median(side.epoch_s)),
                          "epoch_seconds": side.epoch_s,
                          "eval_seconds": float(np.median(eval_s[side.name])),
                          "first_loss": side.first_loss,
                          "recall@20": metrics[side.name]["recall@20"],
                          "ndcg@20": metrics[side.name]["ndcg@20"]}
    o = out["ours"]
    out["ratios"] = {}
    for name in (s.name for s in sides[1:]):
        # epoch by epoch: both sides' steps of an epoch ran in the same minutes
        each = [p / q for p, q in zip(out[name]["epoch_seconds"], o["epoch_seconds"])]
        out["ratios"][name] = {
            "epoch_pyg_over_ours": float(np.median(each)),
            "epoch_pyg_over_ours_each": each,
            "eval_pyg_over_ours": out[name]["eval_seconds"] / o["eval_seconds"],
            "recall@20_diff": o["recall@20"] - out[name]["recall@20"],
            "ndcg@20_diff": o["ndcg@20"] - out[name]["ndcg@20"]}
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dataset", default="ml-1m")
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--warmup-steps", type=int, default=3,
                    help="untimed steps per model before the timed epochs")
    ap.add_argument("--max-steps", type=int, default=0,
                    help="cap on steps per epoch (0: the whole epoch)")
    ap.add_argument("--dim", type=int, default=64)
    ap.add_argument("--layers", type=int, default=3)
    ap.add_argument("--batch-size", type=int, default=4096)
    ap.add_argument("--lr", type=float, default=0.01)
    ap.add_argument("--reg", type=float, default=1e-6)
    ap.add_argument("--keep-rate", type=float, default=0.8,
                    help="edge keep rate of the dropout setting (the headline has none)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--pyg-adj", default="csr,csr32",
                    help=f"comma-separated PyG adjacency forms from {PYG_ADJ}")
    ap.add_argument("--no-write", action="store_true", help="do not write the JSON report")
    a = ap.parse_args(argv)
    forms = tuple(f for f in a.pyg_adj.split(",") if f)
    if not forms or any(f not in PYG_ADJ for f in forms) or len(set(forms)) != len(forms):
        print(f"error: --pyg-adj must list distinct forms from {PYG_ADJ}, got {a.pyg_adj!r}",
              file=sys.stderr)
        return 2
    if a.epochs < 1 or not 0.0 < a.keep_rate < 1.0:
        print(f"error: --epochs must be >= 1 and --keep-rate in (0, 1), got {a.epochs}, "
              f"{a.keep_rate}", file=sys.stderr)
        return 2
    args = {k: v for k, v in vars(a).items() if k != "no_write"} | {"pyg_adj": forms}
    torch.set_num_threads(a.threads)

    import torch_geometric

    from facelib import paths
    from facelib.data import load_dataset

    ds = load_dataset(paths.processed_dir(a.dataset))
    settings = {"no_dropout": _run_setting(args, ds, 1.0),
                "dropout": _run_setting(args, ds, a.keep_rate)}
    for label, res in settings.items():
        o = res["ours"]
        print(f"{label} (keep {res['keep_rate']:g}): ours {o['seconds_per_epoch']:.2f} s/epoch, "
              f"eval {o['eval_seconds']:.3f} s, test recall@20 {o['recall@20']:.4f}")
        for name, r in res["ratios"].items():
            p = res[name]
            each = ", ".join(f"{x:.2f}" for x in r["epoch_pyg_over_ours_each"])
            print(f"  {name:<15} {p['seconds_per_epoch']:.2f} s/epoch, "
                  f"x{r['epoch_pyg_over_ours']:.2f} ours (epochs: {each}), "
                  f"eval {p['eval_seconds']:.3f} s (x{r['eval_pyg_over_ours']:.2f}), "
                  f"first loss {p['first_loss']:.6f} vs {o['first_loss']:.6f}, "
                  f"recall@20 {p['recall@20']:.4f}")
    if not a.no_write:
        from facelib.io import write_json

        out = paths.reports_dir() / "benchmarks" / "lightgcn_vs_pyg.json"
        write_json({"config": args, **settings, "torch": torch.__version__,
                    "torch_geometric": torch_geometric.__version__}, out)
        print(f"wrote {out.relative_to(paths.repo_root())}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
