"""The property and filter panel: where its time goes, how fast it runs, and that it gives
the straightforward answers.

    python benchmarks/scoring.py [--n 1000] [--repeats 3] [--check 10000] [--json]

Molecules: the first ``--n`` of the shipped MOSES test sample and ``--n`` molecules sampled
from the shipped model (seed 0), half each.
1. Profile, one core: ms per molecule of each property and filter computed alone by RDKit's
   own function (``panel_reference.py``), and of the whole straightforward row.
2. ``chem.score_one`` (shared intermediates, screened catalogs) on one core and through
   ``chem.score_smiles`` on all cores: molecules/s, medians of ``--repeats``; the ratio to
   the straightforward row measured in the same run.
3. ``--check N``: N test molecules and N samples scored both ways; prints any difference.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import Steal, median  # noqa: E402
from panel_reference import FILTERS, PROPERTIES, reference_row  # noqa: E402

from molvae import chem  # noqa: E402
from molvae.checkpoint import load_model  # noqa: E402
from molvae.config import SHIPPED_MODEL, SHIPPED_TEST  # noqa: E402
from molvae.generate import sample  # noqa: E402
from molvae.parallel import default_workers  # noqa: E402

WINDOWS = {"mw": (150.0, 600.0), "heavy_atoms": (10, 60)}
ALL_FILTERS = [*FILTERS, "windows"]


def molecules(n: int) -> list[str]:
    test = pd.read_csv(SHIPPED_TEST)["SMILES"].tolist()[:n]
    samples = sample(load_model(SHIPPED_MODEL), num_samples=n, seed=0, workers=1)
    return test + samples["smiles"].dropna().tolist()[:n]


def per_molecule_ms(fn, items) -> float:
    t = time.perf_counter()
    for x in items:
        try:
            fn(x)
        except Exception:
            pass
    return 1000 * (time.perf_counter() - t) / len(items)


def profile(smiles: list[str]) -> dict[str, float]:
    from rdkit import Chem

    mols = [m for m in map(chem.to_mol, smiles) if m is not None]
    parts = {"parse": per_molecule_ms(chem.to_mol, smiles),
             "canonical SMILES": per_molecule_ms(Chem.MolToSmiles, mols)}
    for name, fn in PROPERTIES.items():
        parts[name] = per_molecule_ms(fn, mols)
    for name, fn in FILTERS.items():
        parts[f"filter {name}"] = per_molecule_ms(fn, mols)
    return parts


def check(smiles: list[str]) -> int:
    bad = 0
    for s in smiles:
        want = reference_row(s, WINDOWS)
        got = chem.score_one(s, ALL_FILTERS, WINDOWS)
        for k, v in want.items():
            g = got.get(k)
            same = (v == g or isinstance(v, float) and (math.isnan(v) and math.isnan(g)
                                                        or abs(v - g) <= 1e-9 * max(1, abs(v))))
            if not same:
                bad += 1
                print(f"  differs: {s} {k}: straightforward {v}, panel {g}")
    return bad


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, default=1000)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--check", type=int, default=0)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    smiles = molecules(args.n)
    chem.score_smiles(smiles[:50], ALL_FILTERS, WINDOWS, workers=1)  # load catalogs, models
    [reference_row(s, WINDOWS) for s in smiles[:50]]
    cores = default_workers()
    with Steal() as steal:
        parts = profile(smiles)
        ref, single, multi = [], [], []
        for _ in range(args.repeats):
            t = time.perf_counter()
            for s in smiles:
                reference_row(s, WINDOWS)
            ref.append(len(smiles) / (time.perf_counter() - t))
            t = time.perf_counter()
            chem.score_smiles(smiles, ALL_FILTERS, WINDOWS, workers=1)
            single.append(len(smiles) / (time.perf_counter() - t))
            t = time.perf_counter()
            chem.score_smiles(smiles, ALL_FILTERS, WINDOWS, workers=cores)
            multi.append(len(smiles) / (time.perf_counter() - t))
    r, s, m = median(ref), median(single), median(multi)
    print(f"{len(smiles)} molecules ({args.n} MOSES test + {args.n} model samples), "
          f"one core, ms per molecule (RDKit's function alone):")
    for name, ms in sorted(parts.items(), key=lambda kv: -kv[1]):
        print(f"  {name:18s} {ms:6.3f}")
    print(f"  {'sum of parts':18s} {sum(parts.values()):6.3f}")
    print(f"straightforward row: {r:.0f}/s; panel 1 core {s:.0f}/s ({s / r:.2f}x); "
          f"{cores} cores {m:.0f}/s = {m / (s * cores):.0%} of {cores}x "
          f"(CPU steal {steal.share})")
    out = {"molecules": len(smiles), "cores": cores, "parts_ms": parts,
           "straightforward_per_s": round(r, 1), "single_core_per_s": round(s, 1),
           "parallel_per_s": round(m, 1), "efficiency": round(m / (s * cores), 3),
           "speedup": round(s / r, 2), "cpu_steal": steal.share}
    if args.check:
        checked = molecules(args.check)
        out["checked"], out["differences"] = len(checked), check(checked)
        print(f"check: {out['checked']} molecules, {out['differences']} differences")
    if args.json:
        print(json.dumps(out))


if __name__ == "__main__":
    main()
