"""Intersection counts of 0/1 fingerprints, |A & B| for every pair of a query block and a
fixed set: the matrix product Tanimoto similarity needs (T = c / (|A| + |B| - c)).

Morgan bits are sparse (~42 of 1,024 or 2,048 set in a MOSES molecule) and a few are in
most molecules: the most frequent bits go through a dense float32 product (BLAS), the rest
through a sparse one (scipy), and the two counts add up to the exact intersection. IntDiv of
10,000 molecules at 1,024 bits (``molvae.metrics``): 1.34 s on one core against 2.71 s with
one dense product over every bit; the nearest-molecule index (``molvae.similarity``) uses it
at 2,048 bits.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

DENSE_BITS = 256  # bits of the dense product: the most frequent ones


class BitCounts:
    """The fixed side: a set of n fingerprints, given as the (row, bit) of each set bit."""

    def __init__(self, rows: np.ndarray, bits: np.ndarray, n: int, n_bits: int,
                 dense_bits: int = DENSE_BITS):
        import scipy.sparse as sp

        by_freq = np.argsort(-np.bincount(bits, minlength=n_bits), kind="stable")
        self.common, self.rare = np.sort(by_freq[:dense_bits]), np.sort(by_freq[dense_bits:])
        slot = np.empty(n_bits, dtype=np.int64)  # each bit's row in the dense or sparse part
        slot[self.common], slot[self.rare] = np.arange(len(self.common)), np.arange(len(self.rare))
        common = np.isin(bits, self.common)
        self.dense_t = np.zeros((len(self.common), n), dtype=np.float32)  # (common bits, n)
        self.dense_t[slot[bits[common]], rows[common]] = 1.0
        rare = ~common
        self.sparse_t = sp.csr_matrix(  # (rare bits, n)
            (np.ones(int(rare.sum()), dtype=np.float32), (slot[bits[rare]], rows[rare])),
            shape=(len(self.rare), n))
        self.sparse_t.sort_indices()

    @classmethod
    def of(cls, fp: np.ndarray, dense_bits: int = DENSE_BITS) -> BitCounts:
        """The set of the rows of a 0/1 fingerprint matrix (n, n_bits)."""
        rows, bits = np.nonzero(fp)
        return cls(rows, bits, len(fp), fp.shape[1], dense_bits)

    def __call__(self, q: np.ndarray, start: int = 0,
                 matmul: Callable[[np.ndarray, np.ndarray], np.ndarray] = np.matmul
                 ) -> np.ndarray:
        """0/1 queries (k, n_bits) -> float32 intersection counts (k, n - start) with the
        set's members ``start`` onwards. ``matmul``: the dense product (numpy's, OpenBLAS,
        by default; ``torch_matmul`` where another thread may fork meanwhile: a fork while
        an OpenBLAS call runs on its threads can hang both)."""
        import scipy.sparse as sp

        sparse_t = self.sparse_t[:, start:] if start else self.sparse_t
        inter = (sp.csr_matrix(q[:, self.rare], dtype=np.float32) @ sparse_t).toarray()
        inter += matmul(q[:, self.common].astype(np.float32, copy=False), self.dense_t[:, start:])
        return inter


def torch_matmul(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """a @ b by torch (its thread pool is safe to fork beside)."""
    import torch

    return (torch.from_numpy(a) @ torch.from_numpy(b)).numpy()
