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


class Steal:
    """Share of CPU time the hypervisor took from this (virtual) machine while the block
    ran, from /proc/stat (Linux; None elsewhere). On a shared VM it can exceed 50%, and
    then every figure measured in the block is slower than the code is: report it beside
    them.

        with Steal() as st:
            ...
        st.share  # 0.0 .. 1.0
    """

    share: float | None = None

    @staticmethod
    def _read() -> tuple[int, int] | None:
        try:
            with open("/proc/stat") as fh:
                fields = [int(x) for x in fh.readline().split()[1:]]
        except (OSError, ValueError):
            return None
        steal = fields[7] if len(fields) > 7 else 0
        return steal, sum(fields[:8])

    def __enter__(self) -> Steal:
        self._start = self._read()
        return self

    def __exit__(self, *exc) -> None:
        end = self._read()
        if self._start is not None and end is not None and end[1] > self._start[1]:
            self.share = round((end[0] - self._start[0]) / (end[1] - self._start[1]), 3)
