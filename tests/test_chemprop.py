"""A chemprop v2 model as an optimization objective: a small model trained here on the
shipped data (logP), loaded from its file, used alone and as a term of an mpo."""

from __future__ import annotations

import numpy as np
import pytest

from molvae import chem
from molvae.config import SHIPPED_TEST, SHIPPED_TRAIN, DesirabilityTerm, OptimizeConfig, ScorerConfig
from molvae.data import read_molecules
from molvae.errors import OptimizationError
from molvae.optimization import Objective, Oracle, optimize

pytest.importorskip("chemprop")


@pytest.fixture(scope="module")
def model_file(tmp_path_factory):
    from chemprop import data, featurizers, models, nn
    from lightning import pytorch as pl

    smiles = [s for s in read_molecules(SHIPPED_TRAIN, limit=400).smiles if s]
    logp = [chem.properties(chem.to_mol(s), ["logp"])["logp"] for s in smiles]
    points = [data.MoleculeDatapoint.from_smi(s, [v]) for s, v in zip(smiles, logp, strict=True)]
    ds = data.MoleculeDataset(points, featurizers.SimpleMoleculeMolGraphFeaturizer())
    scaler = ds.normalize_targets()
    ffn = nn.RegressionFFN(input_dim=64, hidden_dim=64,
                           output_transform=nn.UnscaleTransform.from_standard_scaler(scaler))
    model = models.MPNN(nn.BondMessagePassing(d_h=64), nn.MeanAggregation(), ffn)
    pl.seed_everything(0, verbose=False)
    pl.Trainer(max_epochs=4, accelerator="cpu", logger=False, enable_checkpointing=False,
               enable_progress_bar=False, enable_model_summary=False
               ).fit(model, data.build_dataloader(ds, batch_size=64, num_workers=0, seed=0))
    path = tmp_path_factory.mktemp("chemprop") / "logp.pt"
    models.save_model(path, model)
    return path


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


def test_chemprop_model_scores_molecules(model_file):
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


def test_chemprop_objective_end_to_end(tiny, model_file):
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
