"""Shared helpers for the benchmark scripts: the machine's matmul rate, medians, timing."""

from __future__ import annotations

import statistics
import time

import torch


def matmul_gflops(n: int = 2048, repeats: int = 5) -> float:
    """Median fp32 matrix-multiply rate of this machine (GFLOP/s), measured now."""
    a, b = torch.randn(n, n), torch.randn(n, n)
    a @ b
    rates = []
    for _ in range(repeats):
        t = time.perf_counter()
        a @ b
        rates.append(2 * n**3 / (time.perf_counter() - t) / 1e9)
    return statistics.median(rates)


def median(xs) -> float:
    return float(statistics.median(xs))
