"""Worker count, process pool, and one map over chunks with progress.

Workers get SMILES strings (cheap to pickle), never Mol objects. RDKit's log is silenced
per chunk with ``rdBase.BlockLogs`` (a scope, not the global switch), so running a chunk
in-process leaves the caller's RDKit logging as it was.
"""

from __future__ import annotations

import contextlib
import multiprocessing as mp
import os
from collections.abc import Callable, Iterator, Sequence
from typing import Any

__all__ = ["START_METHOD", "default_workers", "resolve_workers", "pool", "map_chunks",
           "torch_threads", "imap_forked"]

# 'fork' where available: workers start in milliseconds instead of re-importing RDKit, and
# take a pool initializer's arguments as they are, unpickled (prior sampling hands its
# workers the model this way).
START_METHOD = "fork" if "fork" in mp.get_all_start_methods() else "spawn"


def default_workers() -> int:
    """All cores, or 1 inside a daemonic process (a Dask or multiprocessing worker), which
    may not start a pool of its own."""
    if mp.current_process().daemon:
        return 1
    return max(len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else 1, 1)


def resolve_workers(workers: int | None) -> int:
    """``workers`` (None: all cores), but 1 wherever a pool cannot be started."""
    cores = default_workers()
    return 1 if cores == 1 else workers or cores


@contextlib.contextmanager
def pool(workers: int, initializer: Callable | None = None, initargs: tuple = ()):
    """A process pool, closed and joined on exit (terminated only on error, so workers are
    never interrupted mid-shutdown)."""
    p = mp.get_context(START_METHOD).Pool(workers, initializer, initargs)
    try:
        yield p
    except BaseException:
        p.terminate()
        raise
    else:
        p.close()
    finally:
        p.join()


def imap_forked(fn: Callable, jobs: Sequence, workers: int, initializer: Callable,
                initargs: tuple, here: tuple = ()) -> Iterator:
    """``fn(job)`` for each job, in order, in forked worker processes each set up by
    ``initializer(*initargs)`` (e.g. handed a model); here, as ``fn(job, *here)``, with one
    worker, one job, or no fork on this platform (a worker re-importing would lose the model)."""
    if workers <= 1 or len(jobs) <= 1 or START_METHOD != "fork":
        yield from (fn(job, *here) for job in jobs)
        return
    with pool(workers, initializer, initargs) as p:
        yield from p.imap(fn, jobs)


@contextlib.contextmanager
def torch_threads(n: int):
    """torch's intra-op thread count set to ``n`` inside the block and restored after it.

    Work made of many tiny tensor ops (decoding a few dozen latent points per step) runs
    fastest on one thread, and with several it slows ~100x when another process is busy on
    the same cores: each op's worker threads wait for a core at every barrier."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def _quiet(job: tuple[Callable, tuple]) -> Any:
    from rdkit import rdBase

    fn, args = job
    with rdBase.BlockLogs():
        return fn(*args)


def map_chunks(fn: Callable[..., list], items: Sequence, *args: Any, chunk_size: int = 250,
               workers: int | None = None, progress: Callable[[int], None] | None = None
               ) -> list:
    """``fn(chunk, *args)`` over consecutive chunks of ``items``, results concatenated in
    input order; over a process pool when ``workers`` (None: all cores) > 1 and there is
    more than one chunk. ``fn`` must be a module-level function returning one result per
    item; ``progress(k)`` is called after each chunk of k items."""
    out: list = []
    for part in _imap(fn, list(items), args, chunk_size, resolve_workers(workers)):
        out.extend(part)
        if progress:
            progress(len(part))
    return out


def _imap(fn: Callable, items: list, args: tuple, chunk_size: int, workers: int
          ) -> Iterator[list]:
    jobs = [(fn, (items[i : i + chunk_size], *args)) for i in range(0, len(items), chunk_size)]
    if workers <= 1 or len(jobs) <= 1:
        yield from map(_quiet, jobs)
        return
    with pool(workers) as p:
        yield from p.imap(_quiet, jobs)
