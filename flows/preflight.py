"""What a run checks before a run folder, an MLflow run or a Prefect flow run exists
(``run_flow`` calls ``preflight`` before starting the flow, so a bad setting leaves nothing
behind, not even Prefect's record of a failed flow)."""

from __future__ import annotations

import zipfile
from pathlib import Path

from molvae import candidates, generate, steering, tracking
from molvae.config import SHIPPED_MODEL, RunConfig
from molvae.errors import CheckpointError, ConfigError
from molvae.optimization import Objective

from . import shards


def preflight(cfg: RunConfig, name: str) -> None:
    """The score settings, the objective (an unknown one, a callable that does not import,
    seeds that are no molecules), the walks' molecules, the model file (there, and a
    checkpoint), the requests the model must take and a sampling width it can use."""
    candidates.check_score_config(cfg.score)
    tracking.check_uri(cfg.tracking)
    if name in ("optimize", "pipeline"):
        Objective.from_config(cfg.optimize, cfg.score.desirability, cfg.scorers)
        candidates.check_molecules("optimize.seeds", cfg.optimize.seeds)
        if cfg.optimize.method == "constrained" and not cfg.optimize.seeds:
            raise ConfigError("optimize.method 'constrained' improves seed molecules: give them "
                              "(optimize.seeds)")
    if name in ("generate", "pipeline"):
        candidates.check_molecules("generate.interpolate", cfg.generate.interpolate)
        candidates.check_molecules("generate.neighbors", cfg.generate.neighbors)
    if cfg.retrain and cfg.generate.condition_steer and (cfg.generate.condition or cfg.conditional.targets):
        raise ConfigError("generate.condition_steer: a model this run trains has no steering head "
                          "(`molvae steer` fits one after training); set it to 0 or leave it unset")
    model = Path(cfg.model_path or SHIPPED_MODEL)
    if name != "train" and not cfg.retrain:
        if not model.is_file():
            raise CheckpointError(f"{model}: model file not found")
        if not zipfile.is_zipfile(model):  # what torch.save writes; cheap, unlike a load
            raise CheckpointError(f"{model}: not a readable molvae checkpoint (not a torch file)")
    asks = (cfg.conditional.targets or cfg.generate.condition
            or cfg.generate.prior_width is not None or "novelty" in cfg.score.filters)
    if name in ("generate", "pipeline") and asks and not cfg.retrain:  # else no model to load
        loaded = shards.model(str(model))
        candidates.check_novelty(cfg.score, loaded)  # the novelty filter needs the hashes
        generate.uses_width(loaded, cfg.generate)  # e.g. a width with z ~ N(0, I)
        for target in [cfg.generate.condition, *cfg.conditional.targets]:
            generate.request(loaded, target)
            asked = cfg.generate.model_copy(update={"condition": target})
            steering.uses_steer(loaded, asked)  # steering asked of a model without a head

