"""A latent surrogate: an MLP from latent means to an objective, for gradient search."""

from __future__ import annotations

from collections.abc import Sequence

import torch

from ..checkpoint import LoadedModel
from ..errors import OptimizationError
from ..latent import codes


def fit_surrogate(loaded: LoadedModel, smiles: Sequence[str], values: Sequence[float],
                  epochs: int = 200, seed: int = 0) -> torch.nn.Module:
    """MLP z -> standardized value, fit on latent means of known molecules."""
    mu, _, errors = codes(loaded, smiles, strict=False)
    y = torch.tensor(values, dtype=torch.float32)
    ok = torch.tensor([e is None for e in errors]) & torch.isfinite(y)
    x, y = mu[ok], y[ok]
    if len(x) < 10:
        raise OptimizationError("too few molecules to fit a surrogate (need >= 10)")
    m, s = float(y.mean()), float(y.std() or 1.0)
    with torch.random.fork_rng():  # seeded here; the caller's RNG state is left as it was
        torch.manual_seed(seed)
        return _train_mlp(x, ((y - m) / s)[:, None], epochs)


def _train_mlp(x: torch.Tensor, yt: torch.Tensor, epochs: int) -> torch.nn.Module:
    d = x.shape[1]
    net = torch.nn.Sequential(torch.nn.Linear(d, 256), torch.nn.GELU(), torch.nn.Linear(256, 256),
                              torch.nn.GELU(), torch.nn.Linear(256, 1))
    opt = torch.optim.Adam(net.parameters(), lr=1e-3, weight_decay=1e-5)
    for _ in range(epochs):
        perm = torch.randperm(len(x))
        for i in range(0, len(x), 256):
            idx = perm[i : i + 256]
            loss = torch.nn.functional.mse_loss(net(x[idx]), yt[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
    net.eval()
    return net
