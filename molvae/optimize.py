"""Latent-space property optimization. RDKit on the decoded molecule is always the ground
truth (the oracle); a surrogate only guides the gradient method.

Methods: ``gradient`` (ascent on a differentiable surrogate, many starts), ``cmaes``
(CMA-ES from the ``cmaes`` package on the true score, with restarts), ``constrained``
(improve seed molecules while Tanimoto similarity >= delta, batched local search), and
``random`` (the prior-sampling baseline under the same oracle budget).
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import torch

from . import chem
from .config import DesirabilityTerm, OptimizeConfig
from .generate import decode_latent, latent_means
from .train import LoadedModel

logger = logging.getLogger(__name__)

METHODS = ("gradient", "cmaes", "constrained", "random")
CANDIDATE_COLUMNS = ["smiles", "valid", "evaluated", "admissible", "score", "seed", "similarity",
                     "method", "step", "start"]


class OptimizationError(ValueError):
    """A bad objective, window, constraint or method."""


# --------------------------------------------------------------------------- objective


@dataclass
class Objective:
    """What to optimize and which molecules are admissible. ``score`` is higher-is-better."""

    prop: str  # property name or "desirability"
    direction: str = "maximize"
    window: tuple[float, float] | None = None
    desirability: Sequence[DesirabilityTerm] = ()
    required_filters: Sequence[str] = ()
    max_heavy_atoms: int | None = None
    similarity_threshold: float = 0.0

    @classmethod
    def from_config(cls, cfg: OptimizeConfig, desirability: Sequence[DesirabilityTerm] = ()
                    ) -> Objective:
        if cfg.objective != "desirability":
            try:
                chem.check_property(cfg.objective)
            except ValueError as exc:
                raise OptimizationError(f"objective: {exc}") from None
        elif not desirability:
            raise OptimizationError("objective 'desirability' needs [score].desirability terms")
        if cfg.window is not None and not cfg.window[0] < cfg.window[1]:
            raise OptimizationError(f"empty objective window {list(cfg.window)}: low must be < high")
        bad = [f for f in cfg.required_filters if f not in chem.FILTERS]
        if bad:
            raise OptimizationError(f"unknown required filter(s) {', '.join(bad)}; choose from "
                                    f"{', '.join(chem.FILTERS)}")
        if cfg.similarity_threshold > 0 and not cfg.seeds:
            raise OptimizationError("similarity_threshold needs seed molecules")
        if cfg.similarity_threshold >= 1.0:
            raise OptimizationError("similarity_threshold >= 1 admits only the seed itself: "
                                    "nothing can improve; use a value below 1")
        return cls(cfg.objective, cfg.direction, cfg.window, tuple(desirability),
                   tuple(cfg.required_filters), cfg.max_heavy_atoms, cfg.similarity_threshold)

    @property
    def names(self) -> list[str]:
        if self.prop == "desirability":
            return sorted({t.property for t in self.desirability} | {"heavy_atoms"})
        return sorted({self.prop, "heavy_atoms"})

    def value(self, props: dict[str, float]) -> float:
        if self.prop == "desirability":
            return chem.composite_score(props, self.desirability)
        v = props[self.prop]
        if self.window is not None:
            lo, hi = self.window
            return -max(lo - v, 0.0, v - hi)  # 0 inside the window
        return v if self.direction == "maximize" else -v


def _evaluate(args) -> list[dict]:
    """Score (smiles, seed) pairs against an objective (runs in worker processes)."""
    pairs, objective, threshold = args
    from rdkit import DataStructs, RDLogger

    RDLogger.DisableLog("rdApp.*")
    fps: dict[str, object] = {}
    out = []
    for s, seed in pairs:
        mol = chem.to_mol(s)
        row = {"smiles": s, "valid": mol is not None, "evaluated": True, "admissible": False,
               "score": -math.inf, "seed": seed}
        if mol is not None:
            props = chem.properties(mol, objective.names)
            row.update(props)
            row["score"] = objective.value(props)
            ok = all(chem.FILTERS[f](mol) for f in objective.required_filters)
            if objective.max_heavy_atoms is not None:
                ok = ok and props["heavy_atoms"] <= objective.max_heavy_atoms
            if seed:
                if seed not in fps:
                    fps[seed] = chem.fingerprint(chem.to_mol(seed))
                row["similarity"] = DataStructs.TanimotoSimilarity(fps[seed], chem.fingerprint(mol))
                ok = ok and row["similarity"] >= threshold
            row["admissible"] = bool(ok)
        out.append(row)
    return out


class Oracle:
    """Scores SMILES with RDKit; counts each distinct (molecule, seed) once (repeats are
    free). Large batches are scored over all cores. ``admissible`` is False when a
    constraint fails (filters, heavy atoms, similarity to the seed)."""

    def __init__(self, objective: Objective, budget: int, workers: int | None = None):
        self.objective = objective
        self.budget = budget
        self.calls = 0
        self.cache: dict[tuple[str, str], dict] = {}
        self.workers = 1 if chem.default_workers() == 1 else workers or chem.default_workers()

    @property
    def exhausted(self) -> bool:
        return self.calls >= self.budget

    def __call__(self, smiles: Sequence[str], seeds: Sequence[str] | None = None) -> list[dict]:
        """One row per molecule: smiles, valid, admissible, score, properties, similarity.

        Molecules past the budget are not scored (``evaluated`` False)."""
        keys = [(s, seeds[i] if seeds is not None else "") for i, s in enumerate(smiles)]
        todo: list[tuple[str, str]] = []
        seen: set[tuple[str, str]] = set()
        for k in keys:
            if k[0] and k not in self.cache and k not in seen and self.calls + len(todo) < self.budget:
                todo.append(k)
                seen.add(k)
        if todo:
            self.calls += len(todo)
            args = (self.objective, self.objective.similarity_threshold)
            if self.workers > 1 and len(todo) >= 200:
                n = self.workers * 4
                jobs = [(todo[i::n], *args) for i in range(n)]
                with chem.pool(self.workers) as p:
                    rows = [r for part in p.map(_evaluate, jobs) for r in part]
                keyed = {(r["smiles"], r["seed"]): r for r in rows}
            else:
                keyed = {(r["smiles"], r["seed"]): r for r in _evaluate((todo, *args))}
            self.cache.update(keyed)
        out = []
        for s, seed in keys:
            row = self.cache.get((s, seed))
            out.append(row if row is not None else
                       {"smiles": s, "valid": bool(s), "evaluated": False, "admissible": False,
                        "score": -math.inf})
        return out


# --------------------------------------------------------------------------- result


@dataclass
class OptimizationResult:
    candidates: pd.DataFrame  # every distinct admissible molecule found
    trajectory: pd.DataFrame  # best score so far per step, with oracle calls
    method: str
    oracle_calls: int
    seconds: float
    starts: pd.DataFrame = field(default_factory=pd.DataFrame)  # constrained: per seed

    def top(self, k: int = 10) -> pd.DataFrame:
        return self.candidates.head(k)


class _Recorder:
    def __init__(self, method: str, oracle: Oracle):
        self.method, self.oracle = method, oracle
        self.rows: list[dict] = []
        self.best = -math.inf
        self.trajectory: list[dict] = []

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
        return OptimizationResult(df, pd.DataFrame(self.trajectory), self.method,
                                  self.oracle.calls, time.perf_counter() - t0)


# --------------------------------------------------------------------------- methods


def optimize(lm: LoadedModel, cfg: OptimizeConfig, desirability: Sequence[DesirabilityTerm] = (),
             surrogate_smiles: Sequence[str] = (),
             progress: Callable[[int, int], None] | None = None,
             annotate: bool = True) -> OptimizationResult:
    """Run ``cfg.method`` under ``cfg.oracle_budget`` RDKit evaluations; candidates carry
    the score, the objective's properties, the similarity to the seed, method, step and
    start, and with ``annotate`` every other property and filter too (the full panel:
    ~13 ms per molecule; a baseline kept only for its scores can skip it)."""
    if cfg.method not in METHODS:
        raise OptimizationError(f"unknown method {cfg.method!r}; choose from {', '.join(METHODS)}")
    objective = Objective.from_config(cfg, desirability)
    for s in cfg.seeds:
        if chem.to_mol(s) is None:
            raise OptimizationError(f"seed {s!r} is not a valid molecule")
    oracle = Oracle(objective, cfg.oracle_budget)
    t0 = time.perf_counter()
    torch.manual_seed(cfg.seed)
    if cfg.method == "random":
        rec = _random(lm, cfg, oracle, progress)
    elif cfg.method == "cmaes":
        rec = _cmaes(lm, cfg, oracle, progress)
    elif cfg.method == "gradient":
        rec = _gradient(lm, cfg, oracle, surrogate_smiles, progress)
    else:
        if not cfg.seeds:
            raise OptimizationError("method 'constrained' needs seed molecules (optimize.seeds)")
        return _constrained(lm, cfg, oracle, progress, t0, annotate)
    result = rec.result(t0)
    if annotate and len(result.candidates):
        result.candidates = _with_all_properties(result.candidates)
    return result


def _with_all_properties(df: pd.DataFrame) -> pd.DataFrame:
    rows = chem.score_smiles(df["smiles"].tolist(), filters=tuple(chem.FILTERS))
    extra = pd.DataFrame(rows).drop(columns=["smiles", "valid"])
    extra = extra[[c for c in extra.columns if c not in df.columns]]
    return pd.concat([df.reset_index(drop=True), extra], axis=1)


def _decode(lm: LoadedModel, z: torch.Tensor) -> list[str]:
    return [smi for _, smi in decode_latent(lm, z.float(), greedy=True)]


def _tick(progress, oracle: Oracle) -> None:
    if progress:
        progress(min(oracle.calls, oracle.budget), oracle.budget)


def _random(lm, cfg, oracle, progress) -> _Recorder:
    """Baseline: sample the prior (multinomial decoding) and keep the best."""
    from .generate import sample

    rec = _Recorder("random", oracle)
    step = 0
    while not oracle.exhausted and step < 10_000:
        batch = sample(lm, min(1000, max(oracle.budget - oracle.calls, 1)), seed=cfg.seed + step,
                       workers=1)
        rec.add(oracle(batch["smiles"].tolist()), step)
        _tick(progress, oracle)
        step += 1
    return rec


def _cmaes(lm, cfg, oracle, progress) -> _Recorder:
    """CMA-ES (``cmaes`` package) on the true score, restarted from the best known points.

    Each run starts at the best of a prior batch (or a seed molecule's code) with step
    ``sigma``; a run ends when it stalls, then a fresh run starts from a new point.
    """
    from cmaes import CMA

    rec = _Recorder("cmaes", oracle)
    d = lm.model.latent_size
    rng = np.random.default_rng(cfg.seed)
    if cfg.seeds:
        mu, _, _ = latent_means(lm, cfg.seeds)
        pool = [m.numpy().astype(np.float64) for m in mu]
    else:
        z0 = torch.randn(min(cfg.num_starts * 4, max(oracle.budget // 5, 8)), d,
                         generator=torch.Generator().manual_seed(cfg.seed))
        rows = oracle(_decode(lm, z0))
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
            rows = oracle(_decode(lm, torch.from_numpy(zs)))
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


def fit_surrogate(lm: LoadedModel, smiles: Sequence[str], values: Sequence[float],
                  epochs: int = 200, seed: int = 0) -> torch.nn.Module:
    """MLP z -> standardized value, fit on latent means of known molecules."""
    mu, _, errors = latent_means(lm, smiles, strict=False)
    y = torch.tensor(values, dtype=torch.float32)
    ok = torch.tensor([e is None for e in errors]) & torch.isfinite(y)
    x, y = mu[ok], y[ok]
    if len(x) < 10:
        raise OptimizationError("too few molecules to fit a surrogate (need >= 10)")
    m, s = float(y.mean()), float(y.std() or 1.0)
    torch.manual_seed(seed)
    d = x.shape[1]
    net = torch.nn.Sequential(torch.nn.Linear(d, 256), torch.nn.GELU(), torch.nn.Linear(256, 256),
                              torch.nn.GELU(), torch.nn.Linear(256, 1))
    opt = torch.optim.Adam(net.parameters(), lr=1e-3, weight_decay=1e-5)
    yt = ((y - m) / s)[:, None]
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


def _gradient(lm, cfg, oracle, surrogate_smiles, progress) -> _Recorder:
    """Ascent on a surrogate from many starts; every distinct decoded molecule is scored."""
    rec = _Recorder("gradient", oracle)
    d = lm.model.latent_size
    if not surrogate_smiles:
        raise OptimizationError("the gradient method needs molecules to fit its surrogate")
    smiles = list(surrogate_smiles)[: cfg.surrogate_size]
    scorer = Oracle(oracle.objective, budget=len(smiles))  # labels of known data, not the budget
    labels = [r["score"] if r["valid"] else float("nan") for r in scorer(smiles)]
    labels = [v if math.isfinite(v) else float("nan") for v in labels]
    net = fit_surrogate(lm, smiles, labels, seed=cfg.seed)
    for p in net.parameters():
        p.requires_grad_(False)
    if cfg.seeds:
        mu, _, _ = latent_means(lm, cfg.seeds)
        z = mu.repeat_interleave(math.ceil(cfg.num_starts / len(cfg.seeds)), 0)[: cfg.num_starts]
        z = z + 0.05 * torch.randn_like(z)
    else:
        z = torch.randn(cfg.num_starts, d, generator=torch.Generator().manual_seed(cfg.seed))
    z = z.clone().requires_grad_(True)
    opt = torch.optim.Adam([z], lr=cfg.step_size)
    starts = list(range(cfg.num_starts))
    for step in range(cfg.steps + 1):
        rec.add(oracle(_decode(lm, z.detach())), step, starts)
        _tick(progress, oracle)
        if oracle.exhausted or step == cfg.steps:
            break
        loss = -net(z).sum() + cfg.prior_weight * 0.5 * (z**2).sum()
        opt.zero_grad()
        loss.backward()
        opt.step()
    return rec


def _constrained(lm, cfg, oracle, progress, t0, annotate: bool = True) -> OptimizationResult:
    """Improve each seed while similarity >= delta: batched hill climbing in latent space.

    Each round decodes ``num_starts`` points around every seed's current centre at a
    radius that shrinks from ``sigma``; a centre moves to the best admissible improvement.
    The budget is shared equally among seeds.
    """
    seeds = [chem.canonical_smiles(s) for s in cfg.seeds]
    rec = _Recorder("constrained", oracle)
    base = oracle(seeds, seeds)
    base_score = np.array([r["score"] for r in base])
    mu, _, _ = latent_means(lm, seeds)
    centre = mu.clone()
    best = base_score.copy()
    best_smiles = list(seeds)
    per_seed = max((oracle.budget - oracle.calls) // len(seeds), 1)
    rounds = max(per_seed // cfg.num_starts, 1)
    gen = torch.Generator().manual_seed(cfg.seed)
    for step in range(1, rounds + 1):
        radius = cfg.sigma * (0.5 ** ((step - 1) / max(rounds - 1, 1)))
        eps = torch.randn(len(seeds), cfg.num_starts, mu.shape[1], generator=gen)
        z = (centre[:, None, :] + radius * eps).reshape(-1, mu.shape[1])
        smiles = _decode(lm, z)
        seed_of = [s for s in seeds for _ in range(cfg.num_starts)]
        start_of = [i for i in range(len(seeds)) for _ in range(cfg.num_starts)]
        rows = oracle(smiles, seed_of)
        rec.add(rows, step, start_of)
        for k, r in enumerate(rows):
            i = start_of[k]
            if r["admissible"] and r["score"] > best[i]:
                best[i], best_smiles[i] = r["score"], r["smiles"]
                centre[i] = z[k]
        _tick(progress, oracle)
        if oracle.exhausted:
            break
    result = rec.result(t0)
    sims = [chem.tanimoto(a, b) for a, b in zip(seeds, best_smiles, strict=True)]
    result.starts = pd.DataFrame({"seed": seeds, "seed_score": base_score, "best": best_smiles,
                                  "best_score": best, "improvement": best - base_score,
                                  "similarity": sims, "success": best > base_score})
    if annotate and len(result.candidates):
        result.candidates = _with_all_properties(result.candidates)
    return result
