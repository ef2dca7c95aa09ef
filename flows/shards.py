"""Prior sampling in shards, each a ``generate.sample`` call of its own (seed, share of the
stored codes), so a run gives the same molecules on threads, on Dask, or here.

A flow's process runs threads (Prefect's, other tasks'): a process forked beside them can
hang on a lock one of them held, and shards sampled on those threads take turns on one
interpreter lock for their Python work (SELFIES, RDKit). ``sample_all`` samples them in
fresh interpreters instead (``python -m flows.shards``, one per core): no fork, no lock
shared, and nothing asked of the caller's main module (multiprocessing's spawn would run a
script without an ``if __name__ == "__main__"`` guard again in every worker).
"""

from __future__ import annotations

import contextlib
import functools
import pickle
import subprocess
import sys
import tempfile
from collections.abc import Sequence

import pandas as pd

from molvae import generate
from molvae.checkpoint import LoadedModel, load_model
from molvae.config import GenerateConfig
from molvae.errors import GenerationError


@functools.lru_cache(maxsize=4)
def model(path: str) -> LoadedModel:
    """The model of ``path``, loaded once per process."""
    return load_model(path)


def sample(model_path: str, n: int, seed: int, gen: dict, part: tuple[int, int] = (0, 1)
           ) -> pd.DataFrame:
    """One shard of ``n`` molecules in this process (no worker processes): the settings of
    ``gen`` (a GenerateConfig as a dict) with this shard's seed and share ``part`` of the
    stored codes, which shards draw by the run's own seed."""
    cfg = generate.settings(GenerateConfig.model_validate(gen), num_samples=n, seed=seed)
    return generate.sample(model(model_path), cfg, workers=1, part=part, code_seed=gen["seed"])


# Fewer molecules than this are sampled here: a worker interpreter takes ~4 s to start
# (torch, RDKit), about what one core needs for 1,000 refined samples.
MIN_FOR_WORKERS = 2000


def sample_all(model_path: str, jobs: Sequence[tuple[int, int, dict, tuple[int, int]]],
               workers: int) -> list[pd.DataFrame]:
    """Each shard's molecules, jobs (n, seed, gen, part) in order, over ``workers`` worker
    interpreters, shards dealt out in turn; here, one after the other, with one worker or
    fewer than ``MIN_FOR_WORKERS`` molecules in all."""
    workers = min(workers, len(jobs))
    if workers <= 1 or sum(job[0] for job in jobs) < MIN_FOR_WORKERS:
        return [sample(model_path, *job) for job in jobs]
    dealt = [list(range(w, len(jobs), workers)) for w in range(workers)]
    procs = []
    with contextlib.ExitStack() as stack:
        stack.callback(_stop, procs)
        for rows in dealt:
            # stderr to a file: a pipe nobody reads while stdout is read could fill and stall
            err = stack.enter_context(tempfile.TemporaryFile())
            proc = subprocess.Popen([sys.executable, "-m", __name__], stdin=subprocess.PIPE,
                                    stdout=subprocess.PIPE, stderr=err)
            procs.append((proc, err))
            proc.stdin.write(pickle.dumps((model_path, [jobs[i] for i in rows])))
            proc.stdin.close()
        out: list[pd.DataFrame | None] = [None] * len(jobs)
        for (proc, err), rows in zip(procs, dealt, strict=True):
            data = proc.stdout.read()
            if proc.wait() != 0:
                err.seek(0)
                tail = err.read().decode(errors="replace").strip().splitlines()[-1:]
                raise GenerationError(f"a sampling worker failed: {(tail or ['no message'])[0]}")
            for i, df in zip(rows, pickle.loads(data), strict=True):
                out[i] = df
        return out


def _stop(procs: list) -> None:
    for proc, _ in procs:
        if proc.poll() is None:
            proc.kill()
        proc.wait()
        proc.stdout.close()


def _main() -> None:
    """A worker: (model path, jobs) pickled on stdin -> the shards' frames pickled on stdout."""
    import torch

    torch.set_num_threads(1)  # one worker per core, no oversubscription
    model_path, jobs = pickle.load(sys.stdin.buffer)
    frames = [sample(model_path, *job) for job in jobs]
    sys.stdout.buffer.write(pickle.dumps(frames))


if __name__ == "__main__":
    _main()
