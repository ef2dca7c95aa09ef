"""The learning-rate schedule: warm-up, cosine decay, and its length fitted to a time budget."""

from __future__ import annotations

import math


def lr_factor(step: int, total: int, warmup: int, floor: float) -> float:
    """Multiplier of the peak learning rate: linear warm-up over ``warmup`` steps, then cosine
    decay to ``floor`` at ``total`` steps."""
    if step < warmup:
        return (step + 1) / warmup
    t = min(1.0, (step - warmup) / max(1, total - warmup))
    return floor + (1.0 - floor) * 0.5 * (1.0 + math.cos(math.pi * t))


def fitted_steps(step: int, by_epochs: int, steps: int, seconds: float,
                 max_minutes: float) -> int:
    """The cosine's length (in steps) that ends as ``max_minutes`` runs out, at the pace of
    the ``steps`` taken in ``seconds`` so far (validations included), from ``step``; never
    longer than ``by_epochs`` steps. Aimed at 95% of the time left: a machine that slows
    towards the end (a busy neighbour) still reaches the floor, and holds it for the last
    few steps."""
    if steps <= 0 or seconds <= 0:
        return by_epochs
    left = max(0.0, max_minutes * 60 - seconds)
    return max(step + 1, min(by_epochs, step + int(0.95 * left * steps / seconds)))
