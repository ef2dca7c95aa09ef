"""Latent-space property optimization: objectives and the oracle, search methods (a dict),
and a surrogate for gradient search.

Methods: ``gradient`` (ascent on a differentiable surrogate, many starts), ``cmaes``
(CMA-ES from the ``cmaes`` package on the true score, with restarts), ``constrained``
(improve seed molecules while Tanimoto similarity >= delta, batched local search), and
``random`` (the prior-sampling baseline under the same oracle budget).
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable, Mapping, Sequence

import pandas as pd
import torch

from .. import chem
from ..checkpoint import LoadedModel
from ..config import DesirabilityTerm, OptimizeConfig, ScorerConfig, overridden
from ..errors import OptimizationError
from ..latent import check_loaded
from ..parallel import torch_threads
from .methods import METHODS, OptimizationResult
from .objective import Objective, Oracle, top_k_auc, top_k_curve
from .surrogate import fit_surrogate

__all__ = ["METHODS", "Objective", "OptimizationResult", "Oracle", "fit_surrogate", "optimize",
           "top_k_auc", "top_k_curve"]


def optimize(loaded: LoadedModel, cfg: OptimizeConfig | None = None,
             desirability: Sequence[DesirabilityTerm] = (),
             surrogate_smiles: Sequence[str] = (),
             progress: Callable[[int, int], None] | None = None,
             annotate: bool = True, *, scorers: Mapping[str, ScorerConfig] = {},
             drawn: Sequence[str] = (), **overrides) -> OptimizationResult:
    """Run ``cfg.method`` under ``cfg.oracle_budget`` oracle calls; candidates carry the
    score, the objective's properties, the similarity to the seed, method, step and start,
    and with ``annotate`` every other property and filter too (the full panel: ~13 ms per
    molecule; a baseline kept only for its scores can skip it). ``scorers``: the named
    scorers the objective may refer to (``RunConfig.scorers``). The result holds every
    oracle call in order (``calls``) and PMO's area under the top-10 curve. ``drawn``
    (method random only): prior samples already made with the model's sampler, which the
    baseline scores before it samples more (a pipeline's own: no second sampling).
    ``overrides``: single [optimize] settings (``oracle_budget=500, method="ga"``) over
    ``cfg`` (default: OptimizeConfig()), validated like a config file."""
    check_loaded(loaded, "optimize")
    cfg = overridden(OptimizeConfig, cfg, overrides, "optimize", "optimize")
    if cfg.method not in METHODS:
        raise OptimizationError(f"unknown method {cfg.method!r}; choose from {', '.join(METHODS)}")
    if drawn and cfg.method != "random":
        raise OptimizationError(f"drawn prior samples are scored by the random baseline only, "
                                f"not by method {cfg.method!r}")
    method = functools.partial(METHODS["random"], drawn=drawn) if drawn else METHODS[cfg.method]
    objective = Objective.from_config(cfg, desirability, scorers)
    for s in cfg.seeds:
        if chem.to_mol(s) is None:
            raise OptimizationError(f"seed {s!r} is not a valid molecule")
    oracle = Oracle(objective, cfg.oracle_budget)
    t0 = time.perf_counter()
    # seeded for this run (the caller's RNG state is kept), small decodes on one thread
    with torch.random.fork_rng(), torch_threads(1):
        torch.manual_seed(cfg.seed)
        rec = method(loaded, cfg, oracle, progress, surrogate_smiles)
    result = rec.result(t0)
    if annotate and len(result.candidates):
        result.candidates = _with_all_properties(result.candidates)
    return result


def _with_all_properties(df: pd.DataFrame) -> pd.DataFrame:
    rows = chem.score_smiles(df["smiles"].tolist(), filters=tuple(chem.FILTERS))
    extra = pd.DataFrame(rows).drop(columns=["smiles", "valid"])
    extra = extra[[c for c in extra.columns if c not in df.columns]]
    return pd.concat([df.reset_index(drop=True), extra], axis=1)
