"""The optimizer beside a busy process (issue 19): does it degrade gracefully?

    python benchmarks/busy.py [--budget 2000] [--repeats 3] [--method cmaes]

Runs the same seeded optimization (QED, the shipped model) ``--repeats`` times on a quiet
machine, then as many times beside a process that keeps both cores busy (two threads of
matrix products), and prints the median wall time of each and their ratio (target <= 3x).
The oracle's pool and the decoder's torch threads are what would oversubscribe the cores.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import Steal  # noqa: E402

from molvae.checkpoint import load_model
from molvae.config import SHIPPED_MODEL, OptimizeConfig
from molvae.optimization import optimize


def _burn(stop) -> None:
    import torch

    torch.set_num_threads(2)
    a = torch.randn(1024, 1024)
    while not stop.is_set():
        a @ a


def _timed(loaded, cfg: OptimizeConfig) -> float:
    t = time.perf_counter()
    res = optimize(loaded, cfg, annotate=False)
    assert res.oracle_calls == cfg.oracle_budget
    return time.perf_counter() - t


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--budget", type=int, default=2000)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--method", default="cmaes")
    args = ap.parse_args()
    loaded = load_model(SHIPPED_MODEL)
    cfg = OptimizeConfig(method=args.method, objective="qed", oracle_budget=args.budget)
    with Steal() as steal:
        quiet = [_timed(loaded, cfg) for _ in range(args.repeats)]
        stop = mp.get_context("spawn").Event()
        burner = mp.get_context("spawn").Process(target=_burn, args=(stop,), daemon=True)
        burner.start()
        time.sleep(3)  # the burner is up
        try:
            busy = [_timed(loaded, cfg) for _ in range(args.repeats)]
        finally:
            stop.set()
            burner.join(10)
    q, b = statistics.median(quiet), statistics.median(busy)
    print(f"{args.method}, {args.budget} oracle calls: quiet {q:.1f} s (runs "
          f"{', '.join(f'{x:.1f}' for x in quiet)}), beside a 2-thread busy process {b:.1f} s "
          f"(runs {', '.join(f'{x:.1f}' for x in busy)}): {b / q:.2f}x; CPU steal "
          f"{steal.share if steal.share is not None else float('nan'):.3f}")


if __name__ == "__main__":
    main()
