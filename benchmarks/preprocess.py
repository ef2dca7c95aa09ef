"""Full MOSES train set: CSV -> cleaned, SELFIES-encoded, cached token arrays.

Targets (issue 2): <= 8 minutes on 2 cores, peak RSS <= 4 GB, cache reload <= 10 s.

    molvae data fetch moses --dest data/moses
    python benchmarks/preprocess.py data/moses/train.csv.gz [--cache-dir .molvae_cache]

Prints wall time, molecules/s, peak RSS (parent and largest worker) and the reload time
(median of 3), then a JSON line.
"""

from __future__ import annotations

import argparse
import json
import resource
import shutil
import statistics
import tempfile
import time
from pathlib import Path

from molvae.config import DataConfig
from molvae.data import load_cache, prepare


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("path")
    ap.add_argument("--cache-dir", default=None, help="keep the cache here (default: temp dir)")
    ap.add_argument("--workers", type=int, default=None)
    args = ap.parse_args()
    tmp = None
    cache_dir = args.cache_dir or (tmp := tempfile.mkdtemp())
    cfg = DataConfig(path=Path(args.path), cache_dir=Path(cache_dir), workers=args.workers)
    t0 = time.perf_counter()
    ds = prepare(cfg, use_cache=False)
    from molvae.data import save_cache

    cache_file = Path(cache_dir) / f"{ds.key}.npz"
    save_cache(ds, cache_file)
    build_s = time.perf_counter() - t0
    rss_self = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    rss_child = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    reloads = []
    for _ in range(3):
        t = time.perf_counter()
        again = load_cache(cache_file)
        reloads.append(time.perf_counter() - t)
    assert len(again) == len(ds)
    out = {
        "molecules_in": ds.report["rows"],
        "kept": len(ds),
        "dropped": ds.report["dropped"],
        "build_seconds": round(build_s, 1),
        "molecules_per_s": round(ds.report["rows"] / build_s),
        "peak_rss_parent_mb": round(rss_self),
        "peak_rss_worker_mb": round(rss_child),
        "reload_seconds_median": round(statistics.median(reloads), 2),
        "cache_mb": round(cache_file.stat().st_size / 2**20, 1),
        "vocab_size": len(ds.vocab),
    }
    print(f"built {out['kept']:,} of {out['molecules_in']:,} in {build_s / 60:.2f} min "
          f"({out['molecules_per_s']:,}/s); peak RSS parent {out['peak_rss_parent_mb']} MB, "
          f"worker {out['peak_rss_worker_mb']} MB; reload {out['reload_seconds_median']} s")
    print(json.dumps(out))
    if tmp:
        shutil.rmtree(tmp)


if __name__ == "__main__":
    main()
