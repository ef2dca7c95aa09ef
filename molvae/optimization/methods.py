"""Search methods in the latent space, each ``fn(loaded, cfg, oracle, progress,
surrogate_smiles) -> _Recorder``, registered in METHODS. RDKit on the decoded molecule is
always the ground truth (the oracle); a surrogate only guides the gradient method."""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import torch

from .. import chem
from ..checkpoint import LoadedModel
from ..errors import OptimizationError
from ..generate import decode_latent, sample
from ..latent import codes
from ..vocab import SPECIALS
from . import ga, turbo
from .edits import selfies_edits
from .objective import Oracle, top_k_auc, top_k_curve
from .surrogate import fit_surrogate

CANDIDATE_COLUMNS = ["smiles", "valid", "evaluated", "admissible", "score", "seed", "similarity",
                     "method", "step", "start"]


@dataclass
class OptimizationResult:
    candidates: pd.DataFrame  # every distinct admissible molecule found
    trajectory: pd.DataFrame  # best score so far per step, with oracle calls
    method: str
    oracle_calls: int
    seconds: float
    starts: pd.DataFrame = field(default_factory=pd.DataFrame)  # constrained: per seed
    calls: pd.DataFrame = field(default_factory=pd.DataFrame)  # every paid call, in order
    unscorable: int = 0  # molecules the objective gave no number for
    budget: int = 0

    def call_log(self) -> pd.DataFrame:
        """Every paid call in order with ``top10_mean``, the mean of the 10 best so far."""
        return self.calls.assign(top10_mean=top_k_curve(self.calls["score"].tolist(), 10))

    @property
    def auc_top10(self) -> float:
        """PMO's AUC of the mean top-10 score over the budget (scores as the objective's)."""
        return top_k_auc(self.calls["score"].tolist() if len(self.calls) else [], 10,
                         self.budget or None)


class _Recorder:
    def __init__(self, method: str, oracle: Oracle):
        self.method, self.oracle = method, oracle
        self.rows: list[dict] = []
        self.best = -math.inf
        self.trajectory: list[dict] = []
        self.starts = pd.DataFrame()  # constrained: one row per seed

    def add(self, rows: list[dict], step: int, start: Sequence[int] | int = -1) -> None:
        for i, r in enumerate(rows):
            if r.get("evaluated") and r["admissible"]:
                st = start[i] if not isinstance(start, int) else start
                self.rows.append({**r, "method": self.method, "step": step, "start": st})
                self.best = max(self.best, r["score"])
        self.trajectory.append({"step": step, "oracle_calls": self.oracle.calls,
                                "best_score": self.best})

    def result(self, t0: float) -> OptimizationResult:
        df = pd.DataFrame(self.rows, columns=None if self.rows else CANDIDATE_COLUMNS)
        if len(df):
            df = (df.sort_values(["score", "step"], ascending=[False, True], kind="stable")
                  .drop_duplicates("smiles").reset_index(drop=True))
        calls = pd.DataFrame(self.oracle.log, columns=["call", "smiles", "score", "scored"])
        return OptimizationResult(df, pd.DataFrame(self.trajectory), self.method,
                                  self.oracle.calls, time.perf_counter() - t0, self.starts,
                                  calls, self.oracle.unscorable, self.oracle.budget)


def _decode(loaded: LoadedModel, z: torch.Tensor) -> list[str]:
    return [smi for _, smi in decode_latent(loaded, z.float())]


def _tick(progress, oracle: Oracle) -> None:
    if progress:
        progress(min(oracle.calls, oracle.budget), oracle.budget)


def _random(loaded, cfg, oracle, progress, surrogate_smiles, drawn: Sequence[str] = ()
            ) -> _Recorder:
    """Baseline: sample the prior (the model's sampler) and keep the best. ``drawn``: prior
    samples already made with that sampler (a pipeline's), scored first, in their order."""
    rec = _Recorder("random", oracle)
    step = 0
    for i in range(0, len(drawn), 1000):
        if oracle.exhausted:
            break
        rec.add(oracle(list(drawn[i : i + 1000])), step)
        _tick(progress, oracle)
        step += 1
    while not oracle.exhausted and step < 10_000:
        batch = sample(loaded, num_samples=min(1000, max(oracle.budget - oracle.calls, 1)),
                       seed=cfg.seed + step, workers=1)
        rec.add(oracle(batch["smiles"].tolist()), step)
        _tick(progress, oracle)
        step += 1
    return rec


def _cmaes(loaded, cfg, oracle, progress, surrogate_smiles) -> _Recorder:
    """CMA-ES (``cmaes`` package) on the true score, restarted from the best known points.

    Each run starts at the best of a prior batch (or a seed molecule's code) with step
    ``sigma``; a run ends when it stalls, then a fresh run starts from a new point.
    """
    from cmaes import CMA

    rec = _Recorder("cmaes", oracle)
    d = loaded.model.latent_size
    rng = np.random.default_rng(cfg.seed)
    if cfg.seeds:
        mu, _, _ = codes(loaded, cfg.seeds)
        pool = [m.numpy().astype(np.float64) for m in mu]
    else:
        z0 = torch.randn(min(cfg.num_starts * 4, max(oracle.budget // 5, 8)), d,
                         generator=torch.Generator().manual_seed(cfg.seed))
        rows = oracle(_decode(loaded, z0))
        rec.add(rows, 0)
        order = np.argsort([-r["score"] for r in rows])
        pool = [z0[i].numpy().astype(np.float64) for i in order[:8]]
    step, run = 1, 0
    best_z, best_score = None, -math.inf
    # Repeated molecules cost no oracle calls, so also cap decoded points (a collapsed
    # search would otherwise loop on cached duplicates).
    max_generations = max(20, 20 * oracle.budget // cfg.num_starts)
    while not oracle.exhausted and step <= max_generations:
        mean = pool[run % len(pool)]
        opt = CMA(mean=mean, sigma=cfg.sigma, population_size=cfg.num_starts,
                  seed=int(rng.integers(2**31)))
        best, stall = -math.inf, 0
        while (not oracle.exhausted and stall < 8 and not opt.should_stop()
               and step <= max_generations):
            zs = np.stack([opt.ask() for _ in range(opt.population_size)])
            rows = oracle(_decode(loaded, torch.from_numpy(zs)))
            rec.add(rows, step, run)
            penalty = cfg.prior_weight * 0.5 * (zs**2).sum(1) / d
            scores = np.array([r["score"] if r["admissible"] else -1e3 for r in rows])
            opt.tell([(z, float(-s + p)) for z, s, p in zip(zs, scores, penalty, strict=True)])
            gen_best = scores.max()
            if gen_best > best_score:
                best_score, best_z = float(gen_best), zs[int(scores.argmax())].copy()
            stall = 0 if gen_best > best + 1e-6 else stall + 1
            best = max(best, gen_best)
            step += 1
            _tick(progress, oracle)
        if best_z is not None:  # restart around the latent point of the best molecule so far
            pool.append(best_z)
        run += 1
        if run > 200:
            break
    return rec


def _gradient(loaded, cfg, oracle, progress, surrogate_smiles) -> _Recorder:
    """Ascent on a surrogate from many starts; every distinct decoded molecule is scored."""
    rec = _Recorder("gradient", oracle)
    d = loaded.model.latent_size
    if not surrogate_smiles:
        raise OptimizationError("the gradient method needs molecules to fit its surrogate")
    smiles = list(surrogate_smiles)[: cfg.surrogate_size]
    scorer = Oracle(oracle.objective, budget=len(smiles))  # labels of known data, not the budget
    labels = [r["score"] if r["valid"] else float("nan") for r in scorer(smiles)]
    labels = [v if math.isfinite(v) else float("nan") for v in labels]
    net = fit_surrogate(loaded, smiles, labels, seed=cfg.seed)
    for p in net.parameters():
        p.requires_grad_(False)
    if cfg.seeds:
        mu, _, _ = codes(loaded, cfg.seeds)
        z = mu.repeat_interleave(math.ceil(cfg.num_starts / len(cfg.seeds)), 0)[: cfg.num_starts]
        z = z + 0.05 * torch.randn_like(z)
    else:
        z = torch.randn(cfg.num_starts, d, generator=torch.Generator().manual_seed(cfg.seed))
    z = z.clone().requires_grad_(True)
    opt = torch.optim.Adam([z], lr=cfg.step_size)
    starts = list(range(cfg.num_starts))
    for step in range(cfg.steps + 1):
        rec.add(oracle(_decode(loaded, z.detach())), step, starts)
        _tick(progress, oracle)
        if oracle.exhausted or step == cfg.steps:
            break
        loss = -net(z).sum() + cfg.prior_weight * 0.5 * (z**2).sum()
        opt.zero_grad()
        loss.backward()
        opt.step()
    return rec


def _constrained(loaded, cfg, oracle, progress, surrogate_smiles) -> _Recorder:
    """Improve each seed while similarity >= delta: batched hill climbing in latent space,
    with SELFIES edits beside it.

    Each round proposes ``num_starts`` molecules per seed: a share ``edit_share()`` are one
    SELFIES edit of the seed's best molecule so far, the rest are decoded around its current
    latent centre at a radius that shrinks from ``sigma``. The centre moves to the best
    admissible improvement (to the code of an edited molecule when an edit won). The budget
    is shared equally among seeds.
    """
    if not cfg.seeds:
        raise OptimizationError("method 'constrained' needs seed molecules (optimize.seeds)")
    seeds = [chem.canonical_smiles(s) for s in cfg.seeds]
    rec = _Recorder("constrained", oracle)
    base = oracle(seeds, seeds)
    base_score = np.array([r["score"] for r in base])
    mu, _, _ = codes(loaded, seeds)
    centre = mu.clone()
    best = base_score.copy()
    best_smiles = list(seeds)
    per_seed = max((oracle.budget - oracle.calls) // len(seeds), 1)
    rounds = max(per_seed // cfg.num_starts, 1)
    gen = torch.Generator().manual_seed(cfg.seed)
    rng = np.random.default_rng(cfg.seed)
    alphabet = [t for t in loaded.vocab.tokens if t not in SPECIALS]
    n_edit = round(cfg.edit_share() * cfg.num_starts)
    n_lat = cfg.num_starts - n_edit
    for step in range(1, rounds + 1):
        radius = cfg.sigma * (0.5 ** ((step - 1) / max(rounds - 1, 1)))
        eps = torch.randn(len(seeds), n_lat, mu.shape[1], generator=gen)
        z = (centre[:, None, :] + radius * eps).reshape(-1, mu.shape[1])
        decoded = _decode(loaded, z) if n_lat else []
        edits = [selfies_edits(b, n_edit, alphabet, rng) for b in best_smiles]
        smiles, start_of, from_z = _proposals(decoded, edits, n_lat)
        rows = oracle(smiles, [seeds[i] for i in start_of])
        rec.add(rows, step, start_of)
        winner: dict[int, int] = {}  # seed -> its best row this round
        for k, r in enumerate(rows):
            i = start_of[k]
            if r["admissible"] and r["score"] > best[i]:
                best[i], best_smiles[i] = r["score"], r["smiles"]
                winner[i] = k
        edited = [i for i, k in winner.items() if from_z[k] < 0]
        for i, k in winner.items():
            if from_z[k] >= 0:
                centre[i] = z[from_z[k]]
        if edited:  # an edit won: search on around its code (if it has one in the vocabulary)
            mu_new = codes(loaded, [best_smiles[i] for i in edited], strict=False)[0]
            for i, m in zip(edited, mu_new, strict=True):
                if not torch.isnan(m).any():
                    centre[i] = m
        _tick(progress, oracle)
        if oracle.exhausted:
            break
    rec.starts = _starts_table(seeds, base_score, best_smiles, best)
    return rec


def _proposals(decoded: list[str], edits: list[list[str]], n_lat: int
               ) -> tuple[list[str], list[int], list[int]]:
    """One round's molecules, seed by seed: its ``n_lat`` decoded ones, then its edits;
    with each molecule's seed and its row in the round's z (-1: an edit)."""
    smiles, start_of, from_z = [], [], []
    for i, seed_edits in enumerate(edits):
        smiles += decoded[i * n_lat:(i + 1) * n_lat] + seed_edits
        from_z += list(range(i * n_lat, (i + 1) * n_lat)) + [-1] * len(seed_edits)
        start_of += [i] * (n_lat + len(seed_edits))
    return smiles, start_of, from_z


def _starts_table(seeds: list[str], base_score: np.ndarray, best_smiles: list[str],
                  best: np.ndarray) -> pd.DataFrame:
    sims = [chem.tanimoto(a, b) for a, b in zip(seeds, best_smiles, strict=True)]
    return pd.DataFrame({"seed": seeds, "seed_score": base_score, "best": best_smiles,
                         "best_score": best, "improvement": best - base_score,
                         "similarity": sims, "success": best > base_score})


def _turbo(loaded, cfg, oracle, progress, surrogate_smiles) -> _Recorder:
    """Trust-region Bayesian optimization (TuRBO-1) in the latent space: see ``turbo``."""
    rec = _Recorder("turbo", oracle)
    turbo.run(loaded, cfg, oracle, rec, lambda: _tick(progress, oracle))
    return rec


def _ga(loaded, cfg, oracle, progress, surrogate_smiles) -> _Recorder:
    """A genetic algorithm with latent crossover and SELFIES mutation: see ``ga``."""
    rec = _Recorder("ga", oracle)
    ga.run(loaded, cfg, oracle, rec, lambda: _tick(progress, oracle))
    return rec


METHODS = {"gradient": _gradient, "cmaes": _cmaes, "constrained": _constrained, "random": _random,
           "turbo": _turbo, "ga": _ga}
