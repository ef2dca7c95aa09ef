"""Ctrl-C during `molvae run`, tried many times (docs/reliability.md).

    python benchmarks/interrupt.py [--tries 20] [--model M] [--at 2.5:14] [--timeout 60]

Each try starts `molvae run --flow optimize` (an oracle budget it never reaches, MLflow off)
in a new process group with a fresh PREFECT_HOME, sends SIGINT to the whole group (what a
terminal's Ctrl-C does) at a random moment in ``--at`` seconds after the start, and waits
``--timeout`` seconds for it to end. A try is clean when it ends with exit 130 and "molvae:
interrupted"; one that does not end is a hang: its Python stacks (py-spy, when installed)
and its stderr are printed, and it is killed. Prints one line a try and the counts.
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def one_try(model: str, at: float, timeout: float) -> tuple[str, float, str]:
    """(outcome, seconds from the signal to the end, stderr's tail)."""
    home = tempfile.mkdtemp(prefix="molvae-interrupt-")
    env = {**os.environ, "MOLVAE_NO_PROGRESS": "1", "PREFECT_HOME": home}
    env.pop("PREFECT_API_URL", None)  # its own temporary server, as on a fresh machine
    cmd = [sys.executable, "-m", "molvae.cli", "run", "--flow", "optimize", "--model", model,
           "--set", f'out_dir="{Path(home) / "runs"}"', "--set", "tracking.enabled=false",
           "--set", "optimize.oracle_budget=1000000"]
    proc = subprocess.Popen(cmd, env=env, start_new_session=True, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True)
    try:
        time.sleep(at)
        os.killpg(proc.pid, signal.SIGINT)
        t0 = time.perf_counter()
        try:
            _, err = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            spy = shutil.which("py-spy")
            if spy:
                subprocess.run([spy, "dump", "--pid", str(proc.pid)], check=False)
            os.killpg(proc.pid, signal.SIGKILL)
            return "HUNG", timeout, proc.communicate()[1][-3000:]
        clean = proc.returncode == 130 and "molvae: interrupted" in err and "is a bug" not in err
        return ("clean" if clean else f"exit {proc.returncode}"), time.perf_counter() - t0, err[-1500:]
    finally:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        shutil.rmtree(home, ignore_errors=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tries", type=int, default=20)
    ap.add_argument("--model", default=str(REPO / "data" / "model" / "molvae_moses_cvae.pt"))
    ap.add_argument("--at", default="2.5:14", help="LOW:HIGH seconds after the start")
    ap.add_argument("--timeout", type=float, default=60)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    low, high = (float(x) for x in args.at.split(":"))
    rng = random.Random(args.seed)
    counts: dict[str, int] = {}
    for i in range(1, args.tries + 1):
        at = rng.uniform(low, high)
        outcome, seconds, err = one_try(args.model, at, args.timeout)
        counts[outcome] = counts.get(outcome, 0) + 1
        print(f"try {i:3d}: SIGINT at {at:5.2f} s -> {outcome} in {seconds:.1f} s", flush=True)
        if outcome != "clean":
            print(err, flush=True)
    print("outcomes: " + ", ".join(f"{k} {v}" for k, v in sorted(counts.items())))


if __name__ == "__main__":
    main()
