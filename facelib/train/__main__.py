"""``python -m facelib.train most_popular [--dataset ml-1m]``: the most-popular floor's
metrics (``reports/metrics/cf/most_popular.json``), a DVC stage of its own so that the nine
backbone x seed runs never share an output file."""

from __future__ import annotations

import argparse
import sys

from facelib.train.stage import run_most_popular


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m facelib.train", description=__doc__)
    parser.add_argument("command", choices=["most_popular"])
    parser.add_argument("--dataset", default="ml-1m")
    parser.add_argument("--smoke", action="store_true", help="write under build/smoke/")
    args = parser.parse_args(argv)
    m = run_most_popular(args.dataset, publish=not args.smoke)
    print(f"most_popular on {args.dataset}: test recall@20 {m['test']['recall@20']:.4f}, "
          f"ndcg@20 {m['test']['ndcg@20']:.4f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
