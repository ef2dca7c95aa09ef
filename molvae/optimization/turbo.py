"""Trust-region Bayesian optimization in the latent space: TuRBO-1 (Eriksson et al.,
"Scalable global optimization via local Bayesian optimization", NeurIPS 2019), as LOL-BO
(Maus et al., NeurIPS 2022) runs it in a VAE's latent space.

A Gaussian process (Matern-5/2, one length scale per latent dimension, fitted by marginal
likelihood) models the score of the codes decoded so far near the trust region; each round
proposes ``num_starts`` codes by Thompson sampling from candidates inside a box around the
best code, the box shaped by the length scales. The box doubles after 3 improving rounds,
halves after ``ceil(d / batch)`` rounds without one, and when it collapses the search
restarts from fresh prior draws. Plain torch, no extra dependency; the GP sees at most
``MAX_POINTS`` points (the nearest to the centre), so a round costs well under a second.
"""

from __future__ import annotations

import math

import torch

from ..generate import decode_latent
from ..latent import LatentPrior
from .objective import Oracle

MAX_POINTS = 384  # GP training points per round: the nearest to the trust region's centre
CANDIDATES = 1024  # Thompson-sampling candidates per round


def _matern52(a: torch.Tensor, b: torch.Tensor, ls: torch.Tensor) -> torch.Tensor:
    r = torch.cdist(a / ls, b / ls).clamp_min(1e-12)
    s5 = math.sqrt(5.0) * r
    return (1 + s5 + s5**2 / 3) * torch.exp(-s5)


class _GP:
    """Exact GP with a constant mean on standardized targets (float64)."""

    def __init__(self, x: torch.Tensor, y: torch.Tensor, start: dict | None = None,
                 steps: int = 40):
        """Hyperparameters fitted from ``start`` (the last round's ``raw``: a few steps
        suffice then) or from a neutral guess."""
        self.x = x
        self.mean, self.std = y.mean(), y.std().clamp_min(1e-6)
        self.y = (y - self.mean) / self.std
        d = x.shape[1]
        raw = start or {"ls": torch.full((d,), math.log(math.sqrt(d))), "os": torch.zeros(()),
                        "noise": torch.tensor(math.log(1e-2))}
        params = {k: v.detach().clone().double().requires_grad_(True) for k, v in raw.items()}
        opt = torch.optim.Adam(params.values(), lr=0.1)
        for _ in range(steps):
            opt.zero_grad()
            self._set(params)
            k = self._k_train()
            chol = torch.linalg.cholesky(k)
            alpha = torch.cholesky_solve(self.y[:, None], chol)
            nll = 0.5 * (self.y[:, None] * alpha).sum() + torch.log(torch.diagonal(chol)).sum()
            nll.backward()
            opt.step()
        self.raw = {k: v.detach() for k, v in params.items()}
        with torch.no_grad():
            self._set(params)
            self.chol = torch.linalg.cholesky(self._k_train())

    def _set(self, p: dict) -> None:
        self.ls = torch.exp(p["ls"]).clamp(0.05, 50.0)
        self.os = torch.exp(p["os"]).clamp(0.05, 20.0)
        self.noise = torch.exp(p["noise"]).clamp(1e-4, 0.5)

    def _k_train(self) -> torch.Tensor:
        n = len(self.x)
        return (self.os * _matern52(self.x, self.x, self.ls)
                + (self.noise + 1e-6) * torch.eye(n, dtype=self.x.dtype))

    @torch.no_grad()
    def thompson(self, cand: torch.Tensor, q: int, gen: torch.Generator) -> torch.Tensor:
        """Indices of the argmax of ``q`` joint posterior draws over ``cand``."""
        ks = self.os * _matern52(cand, self.x, self.ls)
        v = torch.cholesky_solve(ks.T, self.chol)  # K^-1 k*
        mean = ks @ torch.cholesky_solve(self.y[:, None], self.chol)
        cov = self.os * _matern52(cand, cand, self.ls) - ks @ v
        cov = 0.5 * (cov + cov.T) + 1e-6 * torch.eye(len(cand), dtype=cand.dtype)
        chol, info = torch.linalg.cholesky_ex(cov)
        if int(info) != 0:  # numerically indefinite: independent draws from the marginals
            chol = torch.diag(torch.diagonal(cov).clamp_min(1e-9).sqrt())
        eps = torch.randn(len(cand), q, generator=gen, dtype=cand.dtype)
        draws = mean + chol @ eps
        return draws.argmax(0)


def run(loaded, cfg, oracle: Oracle, rec, tick) -> None:
    """Trust-region BO under ``oracle``'s budget; every scored molecule goes to ``rec``."""
    d = loaded.model.latent_size
    q = cfg.num_starts
    gen = torch.Generator().manual_seed(cfg.seed)
    prior = LatentPrior(loaded, "auto", gen)
    n_init = min(max(4 * q, 64), max(oracle.budget // 5, q))
    length_init, length_min, length_max = 4 * cfg.sigma, 4 * cfg.sigma / 2**6, 16 * cfg.sigma
    fail_tol, succ_tol = max(math.ceil(d / q), 4), 3
    xs: list[torch.Tensor] = []
    ys: list[float] = []
    step = 0

    def evaluate(z: torch.Tensor, start: int) -> list[float]:
        nonlocal step
        rows = oracle([s for _, s in decode_latent(loaded, z.float())])
        rec.add(rows, step, start)
        step += 1
        tick()
        return [r["score"] if r.get("evaluated") and r["admissible"] else -math.inf for r in rows]

    restart = 0
    while not oracle.exhausted and restart < 50:
        x = prior(n_init).double()
        y = evaluate(x, restart)
        xs, ys = [x], y
        length, succ, fail = length_init, 0, 0
        stall, hyper = 0, None
        while not oracle.exhausted and length >= length_min and stall < 20:
            X = torch.cat(xs)
            Y = torch.tensor(ys, dtype=torch.float64)
            finite = torch.isfinite(Y)
            if not finite.any():
                break
            Y = torch.where(finite, Y, Y[finite].min())
            z, hyper = _propose(X, Y, length, hyper, q, gen)
            calls = oracle.calls
            new = evaluate(z, restart)
            stall = stall + 1 if oracle.calls == calls else 0  # only repeats decoded
            best = float(Y.max())
            if max(new) > best + 1e-3 * abs(best):
                succ, fail = succ + 1, 0
            else:
                succ, fail = 0, fail + 1
            if succ == succ_tol:
                length, succ = min(2 * length, length_max), 0
            elif fail == fail_tol:
                length, fail = length / 2, 0
            xs.append(z)
            ys.extend(new)
        restart += 1


def _propose(X: torch.Tensor, Y: torch.Tensor, length: float, hyper: dict | None, q: int,
             gen: torch.Generator) -> tuple[torch.Tensor, dict]:
    """Up to ``q`` new codes by Thompson sampling in the trust region around the best code
    (a box of side ``length``, stretched by the GP's length scales), and the fitted GP's
    hyperparameters for the next round's warm start."""
    d = X.shape[1]
    centre = X[Y.argmax()]
    near = torch.cdist(centre[None], X)[0].argsort()[:MAX_POINTS]
    gp = _GP(X[near], Y[near], hyper, steps=40 if hyper is None else 8)
    w = gp.ls / gp.ls.mean()
    w = w / w.prod().pow(1.0 / d)
    lo, hi = centre - w * length / 2, centre + w * length / 2
    cand = lo + (hi - lo) * torch.rand(CANDIDATES, d, generator=gen, dtype=torch.float64)
    # perturb ~20 dimensions of the centre per candidate (TuRBO's choice in high dimension)
    mask = torch.rand(CANDIDATES, d, generator=gen) <= min(20.0 / d, 1.0)
    mask[torch.arange(CANDIDATES), torch.randint(d, (CANDIDATES,), generator=gen)] = True
    cand = torch.where(mask, cand, centre.expand_as(cand))
    return cand[gp.thompson(cand, q, gen).unique()], gp.raw
