"""Nearest known molecule: 10,000 queries (the shipped MOSES test sample) against the
shipped 100,000-molecule training sample, exact Morgan Tanimoto.

    python benchmarks/nearest.py [--queries 10000] [--repeats 3] [--brute 200]

Prints: fingerprinting the training file (what a file without fingerprints beside it costs
once; cached afterwards), building the index from cached fingerprints and from the
compressed ones shipped beside the file (`molvae data index`), the search (medians of
--repeats), and RDKit's
BulkTanimotoSimilarity one query at a time on --brute queries (extrapolated), which also
checks that both find the same best similarity.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import Steal, median  # noqa: E402

from molvae import chem  # noqa: E402
from molvae.config import SHIPPED_TEST, SHIPPED_TRAIN  # noqa: E402
from molvae.parallel import default_workers  # noqa: E402
from molvae.similarity import (  # noqa: E402
    FingerprintIndex,
    fingerprints_name,
    packed_fingerprints,
)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--queries", type=int, default=10_000)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--brute", type=int, default=200)
    args = ap.parse_args()
    queries = pd.read_csv(SHIPPED_TEST)["SMILES"].tolist()[: args.queries]
    cores = default_workers()
    with Steal() as steal, tempfile.TemporaryDirectory() as cache:
        t = time.perf_counter()
        index = FingerprintIndex(pd.read_csv(SHIPPED_TRAIN)["SMILES"].tolist())
        first = time.perf_counter() - t
        np.save(Path(cache) / fingerprints_name(SHIPPED_TRAIN, "SMILES"), index.bits)
        builds, shipped, searches = [], [], []
        for _ in range(args.repeats):
            t = time.perf_counter()
            index = FingerprintIndex.from_file(SHIPPED_TRAIN)  # the compressed copy beside it
            shipped.append(time.perf_counter() - t)
            t = time.perf_counter()
            index = FingerprintIndex.from_file(SHIPPED_TRAIN, cache_dir=cache)
            builds.append(time.perf_counter() - t)
            t = time.perf_counter()
            rows, sims = index.nearest(queries)
            searches.append(time.perf_counter() - t)
        qbits = packed_fingerprints(queries)
        t = time.perf_counter()
        index.nearest_bits(qbits)
        search_only = time.perf_counter() - t
        from rdkit import DataStructs

        train_fps = [chem.fingerprint(chem.to_mol(s)) for s in index.smiles]
        t = time.perf_counter()
        brute = [max(DataStructs.BulkTanimotoSimilarity(chem.fingerprint(chem.to_mol(q)),
                                                        train_fps))
                 for q in queries[: args.brute]]
        per_query = (time.perf_counter() - t) / args.brute
    same = bool(np.allclose(brute, sims[: args.brute], rtol=0, atol=1e-12))
    out = {"queries": len(queries), "indexed": len(index), "cores": cores,
           "first_build_s": round(first, 2), "build_cached_s": round(median(builds), 2),
           "build_shipped_s": round(median(shipped), 2),
           "search_s": round(median(searches), 2), "search_without_fingerprints_s":
           round(search_only, 2), "brute_force_s_extrapolated": round(per_query * len(queries), 1),
           "same_as_brute_force": same, "mean_nearest_similarity": round(float(np.nanmean(sims)), 4),
           "cpu_steal": steal.share}
    print(f"{len(queries):,} queries x {len(index):,} molecules on {cores} cores: search "
          f"{out['search_s']} s (median of {args.repeats}; {out['search_without_fingerprints_s']} s "
          f"without the queries' fingerprints); index from cached fingerprints "
          f"{out['build_cached_s']} s, from the shipped copy {out['build_shipped_s']} s, without "
          f"them (fingerprinting 100k) {out['first_build_s']} s; "
          f"RDKit BulkTanimoto one query at a time: ~{out['brute_force_s_extrapolated']} s; "
          f"same best similarity on {args.brute} queries: {same} (CPU steal {steal.share})")
    print(json.dumps(out))


if __name__ == "__main__":
    main()
