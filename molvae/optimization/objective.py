"""What an optimization maximizes (Objective) and the oracle that scores molecules with
RDKit, counting calls against the budget (each distinct molecule is paid for once)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from .. import chem
from ..config import DesirabilityTerm, OptimizeConfig
from ..errors import OptimizationError
from ..parallel import map_chunks, resolve_workers


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


def _evaluate(pairs: list[tuple[str, str]], objective: Objective, threshold: float) -> list[dict]:
    """Score (smiles, seed) pairs against an objective (runs in worker processes)."""
    from rdkit import DataStructs

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
        self.workers = resolve_workers(workers)

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
            # Small batches in-process: a pool costs more than it saves below ~200 molecules.
            workers = self.workers if len(todo) >= 200 else 1
            rows = map_chunks(_evaluate, todo, self.objective, self.objective.similarity_threshold,
                              chunk_size=-(-len(todo) // (4 * workers)), workers=workers)
            keyed = {(r["smiles"], r["seed"]): r for r in rows}
            self.cache.update(keyed)
        out = []
        for s, seed in keys:
            row = self.cache.get((s, seed))
            out.append(row if row is not None else
                       {"smiles": s, "valid": bool(s), "evaluated": False, "admissible": False,
                        "score": -math.inf})
        return out
