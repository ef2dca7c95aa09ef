"""The full property + filter panel: single-core rate and parallel rate over all cores
(target: parallel >= 85% of single-core rate x cores).

    python benchmarks/scoring.py [--n 4000] [--repeats 3]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import Steal, median  # noqa: E402

from molvae import chem  # noqa: E402
from molvae.config import SHIPPED_TEST  # noqa: E402
from molvae.parallel import default_workers  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=4000)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    smiles = pd.read_csv(SHIPPED_TEST)["SMILES"].tolist()[: args.n]
    filters = [*chem.FILTERS, "windows"]
    windows = {"mw": (150.0, 600.0)}
    chem.score_smiles(smiles[:50], filters, windows, workers=1)  # load catalogs, SA/NP models
    cores = default_workers()
    single, multi = [], []
    with Steal() as steal:
        for _ in range(args.repeats):
            t = time.perf_counter()
            chem.score_smiles(smiles, filters, windows, workers=1)
            single.append(len(smiles) / (time.perf_counter() - t))
            t = time.perf_counter()
            chem.score_smiles(smiles, filters, windows, workers=cores)
            multi.append(len(smiles) / (time.perf_counter() - t))
    s, m = median(single), median(multi)
    out = {"molecules": len(smiles), "cores": cores, "single_core_per_s": round(s, 1),
           "parallel_per_s": round(m, 1), "efficiency": round(m / (s * cores), 3),
           "properties": len(chem.PROPERTIES), "filters": len(filters),
           "cpu_steal": steal.share}
    print(f"full panel ({len(chem.PROPERTIES)} properties, {len(filters)} filters): "
          f"1 core {s:.0f}/s, {cores} cores {m:.0f}/s = {out['efficiency']:.0%} of {cores}x "
          f"(CPU steal {steal.share})")
    print(json.dumps(out))


if __name__ == "__main__":
    main()
