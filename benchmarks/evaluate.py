"""`molvae evaluate` on 10,000 generated molecules including FCD (target <= 2 min on 2 cores).
Runs the real command in a subprocess, so import and start-up time count.

    molvae sample -n 10000 -o samples_10k.csv
    python benchmarks/evaluate.py samples_10k.csv [--repeats 2]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import Steal  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("generated")
    ap.add_argument("--repeats", type=int, default=2)
    args = ap.parse_args()
    times = []
    with Steal() as steal:
        for _ in range(args.repeats):
            t = time.perf_counter()
            subprocess.run([sys.executable, "-m", "molvae.cli", "evaluate", args.generated,
                            "-o", "evaluation.json"], check=True, capture_output=True)
            times.append(time.perf_counter() - t)
    metrics = json.load(open("evaluation.json"))
    out = {"seconds_median": round(statistics.median(times), 1),
           "runs": [round(x, 1) for x in times], "cpu_steal": steal.share, "metrics": metrics}
    print(f"molvae evaluate ({int(metrics['n'])} molecules, FCD included): "
          f"median {out['seconds_median']} s (runs {out['runs']}, CPU steal {steal.share})")
    print(json.dumps(out))


if __name__ == "__main__":
    main()
