"""The sampling frontier (issue 16): FCD against novelty over the decode-time choices.

    python benchmarks/sampling_frontier.py [--model M] [--n 10000] [--points NAME,...]
        [--train data/moses/train.csv.gz] [--json frontier.json] [--plot frontier.png]

Each point samples n molecules with the shipped sampler and one set of [generate] settings
(prior width, temperature, top-p, greedy tokens, ring grammar, refinement passes), and reports FCD against the
shipped MOSES test 10k, novelty (against the full MOSES train when fetched), MOSES filters
and the share with a ring of 8+ atoms. The plot marks the novelty 0.85 line: the default is
the point with the lowest FCD to its right.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import Steal  # noqa: E402
from model_quality import novelty_test, row_metrics  # noqa: E402

from molvae import chem  # noqa: E402
from molvae.checkpoint import load_model  # noqa: E402
from molvae.config import SHIPPED_MODEL, SHIPPED_TEST  # noqa: E402
from molvae.data import read_molecules  # noqa: E402
from molvae.generate import sample, settings  # noqa: E402

# name -> [generate] settings (the rest at their defaults)
POINTS = {
    "T1": {"temperature": 1.0},
    "T1_grammar": {"temperature": 1.0, "ring_grammar": True},
    "T0.9": {"temperature": 0.9},
    "T0.8": {"temperature": 0.8},
    "p0.95": {"top_p": 0.95},
    "p0.9": {"top_p": 0.9},
    "p0.8": {"top_p": 0.8},
    "p0.9_grammar": {"top_p": 0.9, "ring_grammar": True},
    "p0.8_grammar": {"top_p": 0.8, "ring_grammar": True},
    "p0.9_w1.2_grammar": {"top_p": 0.9, "ring_grammar": True, "prior_width": 1.2},
    "p0.8_w1.2_grammar": {"top_p": 0.8, "ring_grammar": True, "prior_width": 1.2},
    "p0.95_grammar": {"top_p": 0.95, "ring_grammar": True},
    "p0.9_w1.1_grammar": {"top_p": 0.9, "ring_grammar": True, "prior_width": 1.1},
    "p0.8_w1.15_grammar": {"top_p": 0.8, "ring_grammar": True, "prior_width": 1.15},
    "p0.8_w1.3_grammar": {"top_p": 0.8, "ring_grammar": True, "prior_width": 1.3},
    "greedy_w1.25_grammar": {"greedy": True, "ring_grammar": True, "prior_width": 1.25},
    "T0.9_grammar": {"temperature": 0.9, "ring_grammar": True},
    "T0.9_w1.1_grammar": {"temperature": 0.9, "ring_grammar": True, "prior_width": 1.1},
    "greedy_grammar": {"greedy": True, "ring_grammar": True},
    "greedy_w1.2_grammar": {"greedy": True, "ring_grammar": True, "prior_width": 1.2},
    "greedy_w1.3_grammar": {"greedy": True, "ring_grammar": True, "prior_width": 1.3},
    # refinement passes (generate.refine): each sample encoded and decoded greedily again
    **{f"greedy_w{w:g}_grammar_r{k}": {"greedy": True, "ring_grammar": True, "prior_width": w,
                                      "refine": k}
       for w, k in ((1.25, 1), (1.25, 2), (1.25, 3), (1.3, 1), (1.3, 2), (1.3, 3), (1.3, 4),
                    (1.3, 5), (1.3, 10), (1.35, 10), (1.4, 3), (1.5, 3))},
}


DEFAULT = "greedy_w1.25_grammar"  # the shipped default (generate.greedy, width 1.25, grammar)


def plot(results: dict, path: str) -> None:
    from matplotlib.figure import Figure

    fig = Figure(figsize=(7.2, 4.8))
    ax = fig.subplots()
    for name, r in results.items():
        colour = ("tab:green" if "_r" in name else "tab:blue" if "grammar" in name
                  else "tab:gray")
        if name == DEFAULT:
            ax.scatter(r["novelty"], r["fcd"], color="tab:red", marker="*", s=160, zorder=3,
                       label="default now")
        ax.scatter(r["novelty"], r["fcd"], color=colour, s=22)
        ax.annotate(name, (r["novelty"], r["fcd"]), fontsize=7, xytext=(3, 2),
                    textcoords="offset points")
    ax.axvline(0.85, color="tab:red", lw=0.8, ls="--")
    ax.text(0.851, ax.get_ylim()[1], "novelty 0.85", color="tab:red", fontsize=7, va="top")
    ax.set_xlabel("novelty (share of valid samples not in MOSES train)")
    ax.set_ylabel("FCD vs MOSES test 10k (lower is better)")
    ax.set_title("Decode-time choices, 10,000 samples each (blue: ring grammar; grey: without; "
                 "green: refined; p = top-p, T = temperature, w = prior width, r = refinement "
                 "passes)", fontsize=8)
    ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default=str(SHIPPED_MODEL))
    ap.add_argument("--n", type=int, default=10_000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--points", default=",".join(POINTS))
    ap.add_argument("--train", default="data/moses/train.csv.gz")
    ap.add_argument("--json")
    ap.add_argument("--plot")
    args = ap.parse_args()
    names = [p for p in args.points.split(",") if p]
    unknown = sorted(set(names) - set(POINTS))
    if unknown:
        ap.error(f"unknown points {unknown}; choose from {', '.join(POINTS)}")
    loaded = load_model(args.model)
    ref = [chem.canonical_smiles(s) for s in read_molecules(SHIPPED_TEST).smiles]
    is_novel, novelty_ref = novelty_test(args.train, loaded)
    results = json.loads(Path(args.json).read_text()) if args.json and Path(args.json).is_file() else {}
    print(f"novelty against {novelty_ref}")
    for name in names:
        t0 = time.perf_counter()
        with Steal() as steal:
            cfg = settings(num_samples=args.n, seed=args.seed, **POINTS[name])
            smiles = sample(loaded, cfg)["smiles"].tolist()
            results[name] = {**POINTS[name], **row_metrics(smiles, ref, is_novel, ".molvae_cache")}
        r = results[name]
        print(f"{name:22s} FCD {r['fcd']:.3f}  novelty {r['novelty']:.4f}  filters "
              f"{r['filters']:.4f}  rings8 {r['rings8']:.4f}  unique {r['uniqueness']:.4f}  "
              f"({time.perf_counter() - t0:.0f} s, steal {steal.share})", flush=True)
        if args.json:
            Path(args.json).write_text(json.dumps(results, indent=1))
    if args.plot:
        plot(results, args.plot)


if __name__ == "__main__":
    main()
