"""Ranking, the diverse top set, and the nearest known molecule (exact against RDKit)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from rdkit import DataStructs

from molvae import candidates, chem
from molvae.config import DesirabilityTerm, ScoreConfig
from molvae.errors import DataError
from molvae.similarity import FingerprintIndex


@pytest.fixture(scope="module")
def train_smiles():
    return pd.read_csv("data/moses_train_100k.csv.gz", nrows=3000)["SMILES"].tolist()


def test_nearest_is_the_brute_force_answer(train_smiles, test_smiles):
    """Dense + sparse products find the same best Tanimoto as RDKit one pair at a time, and
    a molecule of the index finds itself at similarity 1."""
    index = FingerprintIndex(train_smiles, workers=1)
    queries = test_smiles[:60] + [train_smiles[7], "not a molecule", ""]
    rows, sims = index.nearest(queries, workers=1, batch_size=16)
    fps = [chem.fingerprint(chem.to_mol(s)) for s in train_smiles]
    for q, r, s in zip(queries[:61], rows, sims, strict=False):
        exact = DataStructs.BulkTanimotoSimilarity(chem.fingerprint(chem.to_mol(q)), fps)
        assert s == pytest.approx(max(exact), abs=1e-12) and exact[r] == pytest.approx(s)
    assert sims[60] == 1.0 and chem.tanimoto(train_smiles[rows[60]], train_smiles[7]) == 1.0
    assert list(rows[-2:]) == [-1, -1] and np.isnan(sims[-2:]).all()
    # batches on two threads: the same answers, in query order
    again = index.nearest(queries, workers=2, batch_size=16)
    assert np.array_equal(again[0], rows) and np.array_equal(again[1], sims, equal_nan=True)


def test_index_file_cache_and_bad_files(tmp_path, train_smiles):
    path = tmp_path / "known.csv"
    pd.DataFrame({"SMILES": train_smiles[:500]}).to_csv(path, index=False)
    first = FingerprintIndex.from_file(path, cache_dir=tmp_path / "cache")
    cached = list((tmp_path / "cache").glob("fingerprints_*.npy"))
    assert len(cached) == 1
    again = FingerprintIndex.from_file(path, cache_dir=tmp_path / "cache")
    assert np.array_equal(first.bits, again.bits)
    pd.DataFrame({"SMILES": train_smiles[500:900]}).to_csv(path, index=False)  # file changed
    changed = FingerprintIndex.from_file(path, cache_dir=tmp_path / "cache")
    assert len(changed) == 400 and len(list((tmp_path / "cache").glob("*.npy"))) == 2
    with pytest.raises(DataError, match="no column 'smiles'"):
        FingerprintIndex.from_file(path, smiles_column="smiles")
    with pytest.raises(DataError, match="cannot read"):
        FingerprintIndex.from_file(tmp_path / "missing.csv")
    with pytest.raises(DataError, match="at least one molecule"):
        FingerprintIndex([])
    with pytest.raises(DataError, match="score.known_molecules: no such file"):
        candidates.check_score_config(ScoreConfig(known_molecules=tmp_path / "missing.csv"))
    with pytest.raises(ValueError, match="unknown property 'colour'"):
        candidates.check_score_config(ScoreConfig(properties=["colour"]))


def test_ties_broken_and_top_set_diverse_and_novel(test_smiles):
    terms = [DesirabilityTerm(property="qed", kind="maximize", low=0.3, high=0.6)]
    cfg = ScoreConfig(desirability=terms, known_molecules=None)
    # one chemotype three times (benzamides), then others
    smiles = ["NC(=O)c1ccccc1", "CNC(=O)c1ccccc1", "CCNC(=O)c1ccccc1", *test_smiles[:30]]
    df = pd.DataFrame({"smiles": [chem.canonical_smiles(s) for s in smiles], "valid": True})
    df = candidates.annotate(df, cfg, workers=1)
    df.loc[5, "novel"] = False  # a training molecule
    ranked = candidates.rank(df)
    assert ranked["rank"].tolist() == list(range(1, len(ranked) + 1))
    saturated = ranked[ranked.score == 1.0]
    assert len(saturated) > 3  # the ramp saturates: without a tie-break the order is arbitrary
    assert saturated.score_margin.is_monotonic_decreasing
    assert saturated.qed.is_monotonic_decreasing  # one term: the margin is the QED itself
    top = candidates.top_set(ranked, 10, max_similarity=0.4)
    assert 5 not in top.index and top.novel.all()
    fps = [chem.fingerprint(chem.to_mol(s)) for s in top.smiles]
    for i, fp in enumerate(fps):  # no two members more similar than the threshold
        assert max(DataStructs.BulkTanimotoSimilarity(fp, fps[:i]), default=0) <= 0.4
    assert top.attrs["known_skipped"] == int((ranked.loc[: top.index[-1]].novel == False).sum())  # noqa: E712
    full = candidates.with_ranks(df, ranked, top)
    assert list(full.columns[:4]) == ["rank", "smiles", "score", "novel"]
    assert full["rank"].iloc[: len(ranked)].tolist() == list(range(1, len(ranked) + 1))
    assert full.top.sum() == len(top)
    with_known = candidates.top_set(ranked, 40, max_similarity=1.0, include_known=True)
    assert len(with_known) == len(ranked) and 5 in with_known.index
