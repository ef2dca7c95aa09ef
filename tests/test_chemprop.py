"""A chemprop v2 model as an optimization objective: a small model trained here on the
shipped data (logP), loaded from its file, used alone and as a term of an mpo."""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest

from molvae import chem
from molvae.config import SHIPPED_TEST, DesirabilityTerm, OptimizeConfig, ScorerConfig
from molvae.data import read_molecules
from molvae.errors import OptimizationError
from molvae.optimization import Objective, Oracle, optimize

# Looked up, not imported: importing chemprop (Lightning, torch's compiler) at collection cost
# every test process ~3 s; only the process that runs these tests imports it now.
pytestmark = pytest.mark.skipif(importlib.util.find_spec("chemprop") is None,
                                reason="needs chemprop (the chemprop extra)")


def _chemprop_predict(path, smiles: list[str]) -> np.ndarray:
    """chemprop's own way to predict (a Lightning Trainer), for comparison."""
    from chemprop import data, featurizers, models
    from lightning import pytorch as pl

    model = models.MPNN.load_from_file(path)
    ds = data.MoleculeDataset([data.MoleculeDatapoint.from_smi(s) for s in smiles],
                              featurizers.SimpleMoleculeMolGraphFeaturizer())
    trainer = pl.Trainer(accelerator="cpu", logger=False, enable_progress_bar=False)
    out = trainer.predict(model, data.build_dataloader(ds, shuffle=False, num_workers=0))
    return np.concatenate([p.numpy().ravel() for p in out])


def test_chemprop_model_scores_molecules(chemprop_model):
    model_file = chemprop_model
    obj = Objective.from_config(OptimizeConfig(objective=f"chemprop:{model_file}"))
    smiles = [s for s in read_molecules(SHIPPED_TEST, limit=60).smiles if s]  # held out
    rows = Oracle(obj, budget=100)(smiles)
    pred = [r["score"] for r in rows]
    true = [chem.properties(chem.to_mol(s), ["logp"])["logp"] for s in smiles]
    assert all(r["scored"] for r in rows)
    # the model file's predictions, exactly as chemprop makes them
    np.testing.assert_allclose(pred, _chemprop_predict(model_file, [r["smiles"] for r in rows]),
                               rtol=1e-4, atol=1e-4)
    assert np.corrcoef(pred, true)[0, 1] > 0.4  # it learned logP, roughly, from 400 molecules


def test_chemprop_objective_end_to_end(tiny, chemprop_model):
    model_file = chemprop_model
    named = {"potency": ScorerConfig(kind="chemprop", target=str(model_file)),
             "goal": ScorerConfig(kind="mpo", terms=[
                 DesirabilityTerm(property="potency", kind="window", low=2, high=3),
                 DesirabilityTerm(property="qed", kind="maximize", low=0.3, high=0.9)])}
    res = optimize(tiny, OptimizeConfig(method="random", objective="goal", oracle_budget=40),
                   annotate=False, scorers=named)
    assert res.oracle_calls == len(res.calls) > 0 and res.unscorable == 0
    assert res.candidates["goal"].between(0, 1).all()


def test_not_a_chemprop_model(tmp_path):
    bad = tmp_path / "model.pt"
    bad.write_bytes(b"not a model")
    with pytest.raises(OptimizationError, match="not a chemprop v2 model file"):
        Objective.from_config(OptimizeConfig(objective=f"chemprop:{bad}"))
