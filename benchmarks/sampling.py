"""Prior sampling + decoding to canonical SMILES + validity, molecules/s (target >= 1,000 on
2 CPU cores with the shipped model). Median of several runs.

    python benchmarks/sampling.py [--n 10000] [--repeats 3] [--prior normal]
        [--set generate.ring_grammar=true --set generate.top_p=0.9]   # any [generate] setting

With --compare, each run also samples with the default settings right after, so both rates
come from the same minutes of a noisy machine (their ratio is the figure to trust).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import Steal, matmul_gflops, median  # noqa: E402

from molvae.checkpoint import load_model  # noqa: E402
from molvae.config import SHIPPED_MODEL, load_config  # noqa: E402
from molvae.generate import sample, settings  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=10_000)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--model", default=str(SHIPPED_MODEL))
    ap.add_argument("--prior", choices=["auto", "normal", "posterior"], default="auto")
    ap.add_argument("--set", action="append", default=[], metavar="generate.KEY=VALUE")
    ap.add_argument("--compare", action="store_true", help="also time the default settings")
    args = ap.parse_args()
    torch.set_num_threads(2)
    loaded = load_model(args.model)
    cfg = settings(load_config(None, args.set).generate, num_samples=args.n, prior=args.prior)
    sample(loaded, cfg, num_samples=500, seed=99)  # warm-up
    rates, valid, base = [], [], []
    with Steal() as steal:
        for r in range(args.repeats):
            t = time.perf_counter()
            df = sample(loaded, cfg, seed=r)
            rates.append(args.n / (time.perf_counter() - t))
            valid.append(float(df.valid.mean()))
            if args.compare:
                t = time.perf_counter()
                sample(loaded, num_samples=args.n, seed=r, prior=args.prior)
                base.append(args.n / (time.perf_counter() - t))
    gflops = matmul_gflops()  # this machine's speed right now, to compare runs across machines
    out = {"n": args.n, "prior": args.prior, "molecules_per_s_median": round(median(rates)),
           "runs": [round(x) for x in rates], "validity": min(valid),
           "matmul_gflops": round(gflops, 1), "cpu_steal": steal.share,
           "molecules_per_s_per_100_gflops": round(100 * median(rates) / gflops),
           "settings": args.set}
    if base:
        out["default_settings_median"] = round(median(base))
        out["ratio_to_default"] = round(median([a / b for a, b in zip(rates, base, strict=True)]), 3)
    print(f"sampled {args.n} x {args.repeats}: median {out['molecules_per_s_median']} mol/s "
          f"(runs {out['runs']}), validity {out['validity']:.2%}; matmul {gflops:.0f} GFLOP/s, "
          f"CPU steal {steal.share}")
    print(json.dumps(out))


if __name__ == "__main__":
    main()
