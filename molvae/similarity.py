"""Nearest known molecule: a Morgan-fingerprint index over a molecule set (by default the
shipped training sample) that finds, for many query molecules at once, the most similar
indexed molecule by Tanimoto, exactly as ``chem.tanimoto`` defines it.

How it is fast without being approximate: the Tanimoto of bit sets A, B is
|A & B| / (|A| + |B| - |A & B|), so all it needs is the intersection counts, a matrix
product of 0/1 fingerprints, computed by ``chem.BitCounts`` (the 256 most frequent bits
dense, the rest sparse). Batches of queries run on threads, one per core, each with a
one-thread BLAS (both release the interpreter lock): 2x the speed of one batch at a time
with a multi-threaded BLAS, where the sparse product used one core. 10,000 queries x
100,000 molecules: ~8 s on 2 cores here, where RDKit's ``BulkTanimotoSimilarity`` one
query at a time takes ~300 s (``benchmarks/nearest.py``).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from . import chem
from .data import file_digest, smiles_column_of
from .errors import DataError
from .files import atomic_path
from .parallel import map_chunks, resolve_workers

RADIUS, N_BITS = 2, 2048  # chem.fingerprint's: ECFP4, 2,048 bits
logger = logging.getLogger(__name__)


def _fp_chunk(smiles: list[str | None], radius: int, n_bits: int) -> list[bytes]:
    return [np.packbits(row).tobytes() for row in chem.fingerprints(smiles, radius, n_bits)]


def packed_fingerprints(smiles: Sequence[str | None], radius: int = RADIUS,
                        n_bits: int = N_BITS, workers: int | None = None,
                        progress: Callable[[int], None] | None = None) -> np.ndarray:
    """Morgan fingerprints as packed bits, (N, n_bits / 8) uint8, over all cores (an
    invalid molecule: all zeros)."""
    rows = map_chunks(_fp_chunk, list(smiles), radius, n_bits, chunk_size=2000,
                      workers=workers, progress=progress)
    out = np.frombuffer(b"".join(rows), dtype=np.uint8)
    return out.reshape(len(rows), n_bits // 8)


def fingerprints_name(path: Path, smiles_column: str) -> str:
    """The file name of a molecule file's fingerprints: its content hash, the column, and the
    fingerprint kind (ECFP4, 2,048 bits)."""
    return (f"fingerprints_{file_digest(path)[:16]}_{smiles_column}"
            f"_ecfp{2 * RADIUS}x{N_BITS}.npy")


def _read_bits(path: Path, n: int) -> np.ndarray | None:
    """Packed fingerprints of n molecules from ``path`` (.npy, or raw bytes .xz); None when
    the file is missing, unreadable or of another shape (then they are computed)."""
    import lzma

    if not path.is_file():
        return None
    try:
        if path.suffix == ".xz":
            bits = np.frombuffer(lzma.decompress(path.read_bytes()), dtype=np.uint8)
            bits = bits.reshape(-1, N_BITS // 8) if bits.size % (N_BITS // 8) == 0 else bits
        else:
            bits = np.load(path)
    except (OSError, ValueError, EOFError, lzma.LZMAError) as e:
        logger.warning("ignoring unreadable fingerprints %s (%s): computing them", path, e)
        return None
    return bits if bits.shape == (n, N_BITS // 8) else None


def _on_bits(packed: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(row, bit) of every set bit of packed fingerprints, rows ascending: found among the
    nonzero bytes (~43 bits of 2,048 set: unpacking every byte would be ~30x the work)."""
    rows, byte = np.nonzero(packed)
    r, b = np.nonzero(np.unpackbits(packed[rows, byte][:, None], axis=1))
    return rows[r], byte[r] * 8 + b


class FingerprintIndex:
    """``smiles`` indexed for nearest-neighbour search (``nearest``)."""

    def __init__(self, smiles: Sequence[str], bits: np.ndarray | None = None,
                 workers: int | None = None, progress: Callable[[int], None] | None = None):
        self.smiles = list(smiles)
        if not self.smiles:
            raise DataError("the nearest-neighbour index needs at least one molecule")
        self.bits = packed_fingerprints(self.smiles, workers=workers, progress=progress) \
            if bits is None else bits
        # columns ordered by bit count, so each count is one slice (see nearest_bits)
        n = len(self.bits)
        rows, cols = _on_bits(self.bits)
        counts = np.bincount(rows, minlength=n)
        self.order = np.argsort(counts, kind="stable")
        self.group_counts, self.group_starts = np.unique(counts[self.order], return_index=True)
        self._bounds = [*self.group_starts.tolist(), n]  # rows of each count
        rank = np.empty(n, dtype=np.int64)
        rank[self.order] = np.arange(n)  # each row's column in the sorted matrices
        self._counts = chem.BitCounts(rank[rows], cols, n, N_BITS)

    def __len__(self) -> int:
        return len(self.smiles)

    @classmethod
    def from_file(cls, path: str | Path, smiles_column: str = "SMILES",
                  cache_dir: str | Path | None = None, workers: int | None = None,
                  progress: Callable[[int], None] | None = None) -> FingerprintIndex:
        """The index of a molecule file (CSV, optionally gzipped). Its fingerprints are read
        from ``cache_dir`` or from a compressed copy beside the file (``write_beside``; the
        shipped training sample has one), both named by the file's content hash, else
        computed (and cached in ``cache_dir``)."""
        import pandas as pd

        path = Path(path)
        try:
            df = pd.read_csv(path)
        except (OSError, ValueError) as e:
            raise DataError(f"cannot read the molecules to compare with from {path}: {e}") from e
        smiles_column = smiles_column_of(path, df.columns, smiles_column)
        smiles = df[smiles_column].astype(str).tolist()
        name = fingerprints_name(path, smiles_column)
        cache = Path(cache_dir) / name if cache_dir is not None else None
        bits = _read_bits(cache, len(smiles)) if cache is not None else None
        if bits is None:
            bits = _read_bits(path.parent / f"{name}.xz", len(smiles))
            if bits is not None:
                cache = None  # read in a blink: no second copy in the cache
        index = cls(smiles, bits, workers=workers, progress=progress)
        if cache is not None and bits is None:
            with atomic_path(cache) as tmp, open(tmp, "wb") as fh:
                np.save(fh, index.bits)
        return index

    def write_beside(self, path: str | Path, smiles_column: str = "SMILES") -> Path:
        """Write this index's fingerprints, compressed (~2.6 MB for 100,000 molecules), beside
        the molecule file ``path`` it indexes, where ``from_file`` finds them: a team's known
        set indexed once, then read by every run (the file's hash in the name: a changed
        file is not matched to old fingerprints)."""
        import lzma

        path = Path(path)
        out = path.parent / f"{fingerprints_name(path, smiles_column)}.xz"
        with atomic_path(out) as tmp:
            tmp.write_bytes(lzma.compress(np.ascontiguousarray(self.bits).tobytes()))
        return out

    def nearest(self, smiles: Sequence[str | None], workers: int | None = None,
                batch_size: int = 256, progress: Callable[[int], None] | None = None
                ) -> tuple[np.ndarray, np.ndarray]:
        """For each query: the row of its most similar indexed molecule (the first of
        equals) and the Tanimoto similarity; -1 and NaN for an invalid query."""
        query = packed_fingerprints(smiles, workers=workers)
        return self.nearest_bits(query, workers, batch_size, progress)

    def nearest_bits(self, query: np.ndarray, workers: int | None = None,
                     batch_size: int = 256, progress: Callable[[int], None] | None = None
                     ) -> tuple[np.ndarray, np.ndarray]:
        """``nearest`` for packed query fingerprints (``packed_fingerprints``)."""
        from concurrent.futures import ThreadPoolExecutor

        from threadpoolctl import threadpool_limits

        n = len(query)
        best = np.full(n, -1, dtype=np.int64)
        sims = np.full(n, np.nan)
        starts = range(0, n, batch_size)
        with threadpool_limits(1), ThreadPoolExecutor(resolve_workers(workers)) as pool:
            found = pool.map(lambda lo: self._nearest_batch(query[lo:lo + batch_size]), starts)
            for lo, (rows, sim) in zip(starts, found, strict=True):
                best[lo:lo + len(rows)], sims[lo:lo + len(rows)] = rows, sim
                if progress:
                    progress(len(rows))
        return best, sims

    def _nearest_batch(self, packed: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """One batch of queries: rows and similarities, -1 and NaN for an empty query."""
        q = np.unpackbits(packed, axis=1)
        a = q.sum(1, dtype=np.int64).astype(np.float64)
        inter = self._counts(q)
        # Within one bit count b, the most similar is the largest intersection c
        # (c / (a + b - c) grows with c): one max per count, then compare counts.
        rows = np.arange(len(q))
        c = np.empty((len(q), len(self.group_counts)))
        where = np.empty((len(q), len(self.group_counts)), dtype=np.int64)
        for g, (lo, hi) in enumerate(zip(self._bounds[:-1], self._bounds[1:], strict=True)):
            idx = inter[:, lo:hi].argmax(1)
            c[:, g], where[:, g] = inter[rows, idx + lo], idx + lo
        sim = c / np.maximum(a[:, None] + self.group_counts[None, :] - c, 1)
        g = sim.argmax(1)
        ok = a > 0
        return (np.where(ok, self.order[where[rows, g]], -1),
                np.where(ok, sim[rows, g], np.nan))
