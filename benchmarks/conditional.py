"""Conditional generation (issue 21): requested against achieved properties.

    python benchmarks/conditional.py --model data/model/molvae_moses_cvae.pt [--n 1000]
        [--modes codes+decoder,decoder] [--baseline 20000] [--width W] [--guidance G] [--refine K]
        [--draws K] [--steer S] [--json out.json]

For a grid of single-property targets (logP, TPSA, MW, QED inside the training range) and
three joint targets, ``--n`` conditional samples each, per mode:
  codes+decoder  the default: prior codes of training molecules near the request, and the
                 decoder told the request (p(z|c) and p(x|z,c))
  decoder        codes from the unconditional prior, only the decoder told (p(x|z,c))
Each target: mean absolute error between requested and achieved value, the share within
tolerance (``molvae.conditions.TOLERANCE``), validity, uniqueness, novelty, MOSES filters;
per property, the Spearman correlation between requested and achieved values over its grid.
Beside them, the baseline: ``--baseline`` unconditional samples of the same model kept when
they satisfy the target (the share that hits, and the samples it costs per hit), and the
ratio of the conditional hit rate to it (and that ratio's ceiling, 1 / the prior's rate: a
request the prior already hits often cannot show a large gain). With ``--draws K``
(generate.condition_draws; default: the sampler's, 4 for these RDKit properties) each molecule
is the nearest to the request of K decoded: the ratio per decoded molecule (``gain / K``) is
then the one to set beside the prior's, which decodes one molecule per sample. ``--steer S``
(generate.condition_steer; default: the model's) sets the strength of a steering head's aim
(``molvae.steering``; 0: off).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
from scipy.stats import spearmanr

sys.path.insert(0, str(Path(__file__).resolve().parent))

from molvae import chem  # noqa: E402
from molvae.checkpoint import load_model  # noqa: E402
from molvae.conditions import TOLERANCE, hits  # noqa: E402
from molvae.generate import request, sample, settings, uses_draws  # noqa: E402

GRID = {
    "logp": [0.0, 1.0, 2.0, 3.0, 4.0],
    "tpsa": [30.0, 50.0, 70.0, 90.0, 110.0],
    "mw": [260.0, 285.0, 310.0, 335.0],
    "qed": [0.5, 0.6, 0.7, 0.8, 0.9],
}
JOINT = [
    {"logp": (2.0, 3.0), "tpsa": (0.0, 90.0), "mw": 340.0},  # Lim et al.'s kind of request
    {"logp": 1.0, "qed": 0.9},
    {"logp": 4.0, "tpsa": 40.0, "hbd": 0.0},
]
PROPS = ("mw", "logp", "tpsa", "hbd", "hba", "qed", "sa")


def scored(loaded, smiles: list[str]) -> dict[str, np.ndarray]:
    rows = chem.score_smiles(smiles, filters=("moses",), property_names=PROPS)
    out = {p: np.array([r.get(p, np.nan) for r in rows], dtype=float) for p in PROPS}
    out["moses"] = np.array([bool(r.get("pass_moses", False)) for r in rows])
    return out


def measure(loaded, target: dict, n: int, codes: bool, seed: int, width: float | None,
            guidance: float | None, refine: int | None = None, draws: int | None = None,
            steer: float | None = None) -> dict:
    asked_ranges = request(loaded, target)
    t = time.perf_counter()
    df = sample(loaded, num_samples=n, seed=seed, condition=target, condition_codes=codes,
                prior_width=width, condition_guidance=guidance, refine=refine,
                condition_draws=draws, condition_steer=steer)
    secs = time.perf_counter() - t
    valid = df[df.valid]
    smiles = valid.smiles.tolist()
    vals = scored(loaded, smiles)
    row = {"target": _name(target), "n": n, "validity": float(df.valid.mean()),
           "uniqueness": len(set(smiles)) / max(len(smiles), 1),
           "novelty": float(loaded.is_novel(sorted(set(smiles))).mean()) if smiles else 0.0,
           "moses_filters": float(vals["moses"].mean()), "sample_s": round(secs, 1),
           "hit": float(hits(asked_ranges, vals).mean()),
           "draws": uses_draws(settings(condition_draws=draws), asked_ranges)}
    for name in asked_ranges:
        asked = valid[f"target_{name}"].to_numpy(dtype=float)
        row[f"mae_{name}"] = float(np.nanmean(np.abs(vals[name] - asked)))
        row[f"mean_{name}"] = float(np.nanmean(vals[name]))
        row[f"_pairs_{name}"] = (asked.tolist(), vals[name].tolist())
    return row


def _name(target: dict) -> str:
    return " ".join(f"{k}={v[0]:g}:{v[1]:g}" if isinstance(v, tuple) else f"{k}={v:g}"
                    for k, v in target.items())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", required=True)
    ap.add_argument("--n", type=int, default=1000)
    ap.add_argument("--baseline", type=int, default=20000)
    ap.add_argument("--modes", default="codes+decoder,decoder")
    ap.add_argument("--properties", default=",".join(GRID), help="grid properties to run")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--guidance", type=float, help="classifier-free guidance of the decoder "
                    "(generate.condition_guidance; default: the model's)")
    ap.add_argument("--width", type=float, help="prior width of the conditional samples "
                    "(default: the model's)")
    ap.add_argument("--refine", type=int, help="refinement passes of the conditional and the "
                    "baseline samples (default: the model's)")
    ap.add_argument("--draws", type=int, help="decoded molecules per molecule kept, the nearest "
                    "to the request (generate.condition_draws; default: the sampler's)")
    ap.add_argument("--steer", type=float, help="steering strength of a model with a steering "
                    "head (generate.condition_steer; default: the model's; 0: off)")
    ap.add_argument("--json")
    args = ap.parse_args()
    loaded = load_model(args.model)
    if loaded.conditions is None:
        sys.exit(f"{args.model} is not a conditional model")
    targets = [{p: v} for p in args.properties.split(",") if p for v in GRID[p]
               if p in loaded.conditions.names] + [
        j for j in JOINT if set(j) <= set(loaded.conditions.names)]

    t = time.perf_counter()
    base = sample(loaded, num_samples=args.baseline, seed=args.seed + 1, refine=args.refine)
    base_smiles = base[base.valid].smiles.tolist()
    base_vals = scored(loaded, base_smiles)
    print(f"baseline: {args.baseline} unconditional samples in {time.perf_counter() - t:.0f} s",
          flush=True)
    results = {"model": args.model, "n": args.n, "baseline_n": args.baseline, "rows": [],
               "tolerance": TOLERANCE}
    for mode in args.modes.split(","):
        pairs: dict[str, tuple[list, list]] = {}
        for target in targets:
            row = measure(loaded, target, args.n, mode == "codes+decoder", args.seed, args.width,
                          args.guidance, args.refine, args.draws, args.steer)
            rate = float(hits(request(loaded, target), base_vals).mean()) * len(base_smiles) / args.baseline
            row.update(mode=mode, baseline_hit=rate,
                       samples_per_hit=(1 / rate) if rate > 0 else None,
                       gain=(row["hit"] / rate) if rate > 0 else None,
                       gain_per_decode=(row["hit"] / rate / row["draws"]) if rate > 0 else None,
                       max_gain=(1 / rate) if rate > 0 else None)  # a 100% hit rate
            for k in list(row):
                if k.startswith("_pairs_") and len(target) == 1:
                    a, v = pairs.setdefault(k[7:], ([], []))
                    a += row[k][0]
                    v += row[k][1]
                if k.startswith("_pairs_"):
                    del row[k]
            results["rows"].append(row)
            maes = " ".join(f"MAE {k[4:]} {v:.3g}" for k, v in row.items() if k.startswith("mae_"))
            print(f"{mode:14s} {row['target']:32s} {maes}  hit {row['hit']:.1%} (prior "
                  f"{rate:.1%}, x{row['gain'] or float('nan'):.1f} of at most "
                  f"x{row['max_gain'] or float('nan'):.1f}; per decoded molecule "
                  f"x{row['gain_per_decode'] or float('nan'):.2f} of {row['draws']})  "
                  f"valid {row['validity']:.1%} "
                  f"unique {row['uniqueness']:.1%} novel {row['novelty']:.1%} MOSES "
                  f"{row['moses_filters']:.1%}", flush=True)
        for name, (asked, got) in pairs.items():
            ok = np.isfinite(got)
            rho = float(spearmanr(np.asarray(asked)[ok], np.asarray(got)[ok]).statistic)
            results["rows"].append({"mode": mode, "target": f"{name} grid", "spearman": rho})
            print(f"{mode:14s} {name} grid: Spearman requested vs achieved {rho:.3f}", flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
