"""What an optimization maximizes (Objective) and the oracle that scores molecules,
counting calls against the budget: each distinct molecule (canonical SMILES) is paid for
once, every paid call is logged in order (for the PMO area under the top-10 curve), and a
molecule the objective cannot score is marked and counted without stopping the run."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from .. import chem
from ..config import DesirabilityTerm, OptimizeConfig, ScorerConfig
from ..errors import OptimizationError
from ..parallel import map_chunks, resolve_workers
from . import scorers as scoring


@dataclass
class Objective:
    """What to optimize and which molecules are admissible. ``score`` is higher-is-better.

    ``prop`` is a built-in property, ``"desirability"`` (of the ``desirability`` terms), or
    the name of a ``scorer`` (a scorers.Scorer: a task, a user's callable, a chemprop model).
    """

    prop: str
    direction: str = "maximize"
    window: tuple[float, float] | None = None
    desirability: Sequence[DesirabilityTerm] = ()
    required_filters: Sequence[str] = ()
    max_heavy_atoms: int | None = None
    similarity_threshold: float = 0.0
    scorer: scoring.Scorer | None = field(default=None, repr=False)

    @classmethod
    def from_config(cls, cfg: OptimizeConfig, desirability: Sequence[DesirabilityTerm] = (),
                    scorers: Mapping[str, ScorerConfig] = {}) -> Objective:
        """Validated against everything known before any work (an unknown name, a callable
        that does not import, a model file that is not there fail here, in one line)."""
        scorer = None
        if cfg.objective == "desirability":
            if not desirability:
                raise OptimizationError("objective 'desirability' needs [score].desirability terms")
            if any(t.scorer is not None or scoring.resolve(t.property, scorers) is not None
                   for t in desirability):
                scorer = scoring.MPOScorer(desirability, "geometric", scorers)
            else:  # built-in properties only: computed with the rest, over all cores
                for t in desirability:
                    _check_name(t.property, scorers)
        else:
            spec = scoring.resolve(cfg.objective, scorers)
            if spec is not None:
                scorer = scoring.build(spec, scorers)
            else:
                _check_name(cfg.objective, scorers)
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
                   tuple(cfg.required_filters), cfg.max_heavy_atoms, cfg.similarity_threshold,
                   scorer)

    @property
    def names(self) -> list[str]:
        """The built-in properties computed for every scored molecule."""
        if self.scorer is not None:
            return ["heavy_atoms"]
        if self.prop == "desirability":
            return sorted({t.property for t in self.desirability} | {"heavy_atoms"})
        return sorted({self.prop, "heavy_atoms"})

    def value(self, props: dict[str, float]) -> float:
        if self.prop == "desirability" and self.scorer is None:
            return chem.composite_score(props, self.desirability)
        v = props.get(self.prop, math.nan)
        if v is None or not math.isfinite(v):
            return -math.inf
        if self.window is not None:
            lo, hi = self.window
            return -max(lo - v, 0.0, v - hi)  # 0 inside the window
        return v if self.direction == "maximize" else -v


def _check_name(name: str, scorers: Mapping[str, ScorerConfig]) -> None:
    try:
        chem.check_property(name)
    except ValueError as exc:
        raise OptimizationError(
            f"objective: {exc}; or a [scorers] name ({', '.join(scorers) or 'none defined'}), "
            "a task (pmo:NAME), a callable (file.py:function or package.module:function) "
            "or chemprop:MODEL_FILE") from None


def _evaluate(pairs: list[tuple[str, str]], names: list[str], required_filters: Sequence[str],
              max_heavy_atoms: int | None, threshold: float) -> list[dict]:
    """Properties and constraints of (canonical smiles, seed) pairs (in worker processes)."""
    from rdkit import DataStructs

    fps: dict[str, object] = {}
    out = []
    for s, seed in pairs:
        mol = chem.to_mol(s)
        row = {"smiles": s, "valid": mol is not None, "evaluated": True, "admissible": False,
               "score": -math.inf, "seed": seed}
        if mol is not None:
            props = chem.properties(mol, names)
            row.update(props)
            ok = all(chem.FILTERS[f](mol) for f in required_filters)
            if max_heavy_atoms is not None:
                ok = ok and props["heavy_atoms"] <= max_heavy_atoms
            if seed:
                if seed not in fps:
                    fps[seed] = chem.fingerprint(chem.to_mol(seed))
                row["similarity"] = DataStructs.TanimotoSimilarity(fps[seed], chem.fingerprint(mol))
                ok = ok and row["similarity"] >= threshold
            row["admissible"] = bool(ok)
        out.append(row)
    return out


class Oracle:
    """Scores molecules against an objective; counts each distinct (canonical molecule,
    seed) once (repeats are free) and stops paying at ``budget``. Built-in properties of
    large batches are computed over all cores; a scorer is called once per batch.

    ``log`` holds every paid call in order (call number, smiles, score, unscorable);
    ``unscorable`` counts molecules the objective returned no number for (marked
    ``scored`` False in their rows). ``admissible`` is False when a constraint fails."""

    def __init__(self, objective: Objective, budget: int, workers: int | None = None):
        self.objective = objective
        self.budget = budget
        self.calls = 0
        self.unscorable = 0
        self.log: list[dict] = []
        self.cache: dict[tuple[str, str], dict] = {}
        self.workers = resolve_workers(workers)
        self._canonical: dict[str, str] = {}

    @property
    def exhausted(self) -> bool:
        return self.calls >= self.budget

    def canonical(self, smiles: str) -> str:
        """The canonical SMILES; "" for an invalid one (as in PMO: not paid for, score 0)."""
        if smiles not in self._canonical:
            self._canonical[smiles] = (chem.canonical_smiles(smiles) or "") if smiles else ""
        return self._canonical[smiles]

    def __call__(self, smiles: Sequence[str], seeds: Sequence[str] | None = None) -> list[dict]:
        """One row per molecule: smiles (canonical), valid, admissible, score, properties,
        similarity. Molecules past the budget are not scored (``evaluated`` False)."""
        keys = [(self.canonical(s), seeds[i] if seeds is not None else "")
                for i, s in enumerate(smiles)]
        todo: list[tuple[str, str]] = []
        seen: set[tuple[str, str]] = set()
        for k in keys:
            if k[0] and k not in self.cache and k not in seen and self.calls + len(todo) < self.budget:
                todo.append(k)
                seen.add(k)
        if todo:
            self._pay(todo)
        out = []
        for s, seed in keys:
            row = self.cache.get((s, seed))
            out.append(row if row is not None else
                       {"smiles": s, "valid": bool(s), "evaluated": not s, "admissible": False,
                        "score": -math.inf})
        return out

    def _pay(self, todo: list[tuple[str, str]]) -> None:
        obj = self.objective
        # Small batches in-process: a pool costs more than it saves below ~200 molecules.
        workers = self.workers if len(todo) >= 200 else 1
        rows = map_chunks(_evaluate, todo, obj.names, tuple(obj.required_filters),
                          obj.max_heavy_atoms, obj.similarity_threshold,
                          chunk_size=-(-len(todo) // (4 * workers)), workers=workers)
        if obj.scorer is not None:
            valid = [r for r in rows if r["valid"]]
            smiles = [r["smiles"] for r in valid]
            values = obj.scorer(smiles, [chem.to_mol(s) for s in smiles]) if valid else []
            for r, v in zip(valid, values, strict=True):
                r[obj.prop] = float(v)
        for r in rows:
            r["score"] = obj.value(r) if r["valid"] else -math.inf
            r["scored"] = bool(r["valid"] and math.isfinite(r["score"]))
            if r["valid"] and not r["scored"]:
                self.unscorable += 1
                r["admissible"] = False
            self.calls += 1
            self.log.append({"call": self.calls, "smiles": r["smiles"], "score": r["score"],
                             "scored": r["scored"]})
            self.cache[(r["smiles"], r["seed"])] = r


def top_k_curve(scores: Sequence[float], k: int = 10) -> np.ndarray:
    """The mean of the ``k`` best scores after each call (fewer while fewer were made);
    not-a-number counts as 0, as in PMO."""
    import heapq

    best: list[float] = []
    out = np.empty(len(scores))
    for i, s in enumerate(scores):
        v = s if s is not None and math.isfinite(s) else 0.0
        if len(best) < k:
            heapq.heappush(best, v)
        elif v > best[0]:
            heapq.heapreplace(best, v)
        out[i] = sum(best) / len(best)
    return out


def top_k_auc(scores: Sequence[float], k: int = 10, budget: int | None = None,
              every: int = 100) -> float:
    """PMO's area under the curve of the mean top-``k`` score against oracle calls (Gao et
    al. 2022, ``top_auc`` in wenhao-gao/mol_opt), normalized by ``budget``: the curve is
    sampled every ``every`` calls with the trapezoid rule, and a run that stops early is
    held at its last value up to the budget. ``scores`` in call order; not-a-number counts
    as 0."""
    vals = np.array([s if s is not None and math.isfinite(s) else 0.0 for s in scores], float)
    budget = budget or len(vals)
    n = min(len(vals), budget)
    if n == 0:
        return 0.0
    vals = vals[:n]

    def top_mean(m: int) -> float:
        return float(np.sort(vals[:m])[::-1][:k].mean())

    total, prev, called = 0.0, 0.0, 0
    for idx in range(every, n, every):
        now = top_mean(idx)
        total += every * (now + prev) / 2
        prev, called = now, idx
    now = top_mean(n)
    total += (n - called) * (now + prev) / 2
    if n < budget:
        total += (budget - n) * now
    return total / budget
