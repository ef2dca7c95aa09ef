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
    with pytest.raises(DataError, match="no column 'mol'.*--smiles-column"):
        FingerprintIndex.from_file(path, smiles_column="mol")
    with pytest.raises(DataError, match="cannot read"):
        FingerprintIndex.from_file(tmp_path / "missing.csv")
    with pytest.raises(DataError, match="at least one molecule"):
        FingerprintIndex([])
    with pytest.raises(DataError, match="score.known_molecules: no such file"):
        candidates.check_score_config(ScoreConfig(known_molecules=tmp_path / "missing.csv"))
    with pytest.raises(ValueError, match="unknown property 'colour'"):
        candidates.check_score_config(ScoreConfig(properties=["colour"]))


def test_fingerprints_written_beside_the_file_are_read_back(tmp_path, train_smiles, run_main,
                                                             caplog):
    """`molvae data index` writes a file's fingerprints beside it; from_file reads them
    from there as they are (here: altered bits, to see that they were read, not computed),
    and computes them when that copy is corrupt or of another file's length."""
    path = tmp_path / "known.csv"
    pd.DataFrame({"SMILES": train_smiles[:300]}).to_csv(path, index=False)
    rc, out, _ = run_main("data", "index", path)
    assert rc == 0 and "300 molecules indexed" in out
    beside = list(tmp_path.glob("fingerprints_*_SMILES_ecfp4x2048.npy.xz"))
    assert len(beside) == 1 and str(beside[0]) in out
    computed = FingerprintIndex(train_smiles[:300], workers=1).bits
    assert np.array_equal(FingerprintIndex.from_file(path).bits, computed)
    altered = computed.copy()
    altered[0] = 0
    FingerprintIndex(train_smiles[:300], altered).write_beside(path)
    assert np.array_equal(FingerprintIndex.from_file(path).bits, altered)
    beside[0].write_bytes(b"not xz")
    with caplog.at_level("WARNING", logger="molvae.similarity"):
        assert np.array_equal(FingerprintIndex.from_file(path).bits, computed)
    assert "ignoring unreadable fingerprints" in caplog.text
    FingerprintIndex(train_smiles[:299], computed[:299]).write_beside(path)  # another length
    assert np.array_equal(FingerprintIndex.from_file(path).bits, computed)
    bad = tmp_path / "bad.csv"
    pd.DataFrame({"SMILES": ["CCO", "not a molecule"]}).to_csv(bad, index=False)
    rc, out, _ = run_main("data", "index", bad)
    assert rc == 0 and "2 molecules indexed (1 row not a valid molecule: never a match)" in out
    rc, _, err = run_main("data", "index", tmp_path / "missing.csv")
    assert rc != 0 and "missing.csv" in err


def test_the_shipped_training_sample_has_its_fingerprints_beside_it(train_smiles):
    """The shipped sample's compressed fingerprints (read by every run's nearest-molecule
    search instead of fingerprinting 100,000 molecules) are those chem computes today."""
    from molvae.config import SHIPPED_TRAIN
    from molvae.similarity import _read_bits, fingerprints_name

    shipped = SHIPPED_TRAIN.parent / f"{fingerprints_name(SHIPPED_TRAIN, 'SMILES')}.xz"
    bits = _read_bits(shipped, 100_000)
    assert bits is not None, f"{shipped} is missing or stale: molvae data index {SHIPPED_TRAIN}"
    assert np.array_equal(bits[:3000], FingerprintIndex(train_smiles, workers=1).bits)


def test_ties_broken_and_top_set_diverse_and_novel(test_smiles):
    terms = [DesirabilityTerm(property="qed", kind="maximize", low=0.3, high=0.6)]
    cfg = ScoreConfig(desirability=terms, known_molecules=None)
    # one chemotype three times (benzamides), then others
    smiles = ["NC(=O)c1ccccc1", "CNC(=O)c1ccccc1", "CCNC(=O)c1ccccc1", *test_smiles[:30]]
    df = pd.DataFrame({"smiles": [chem.canonical_smiles(s) for s in smiles], "valid": True})
    df = candidates.annotate(df, cfg, workers=1)
    assert "novel" not in df  # without a model its training set is unknown, not empty
    df["novel"] = df.index != 5  # a training molecule
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


def test_a_requests_properties_are_scored_whatever_score_properties_lists():
    """The default (None: every property) crashed `molvae run` with a [conditional] section
    (session 33's fresh-clone run); a short list gets the requested RDKit properties added."""
    from molvae.candidates import with_requested
    from molvae.config import ScoreConfig

    everything = ScoreConfig()
    assert everything.properties is None and with_requested(everything, ["logp", "tpsa"]) is everything
    assert with_requested(ScoreConfig(properties=[]), ["logp"]).properties == []  # [] scores all
    some = with_requested(ScoreConfig(properties=["qed"]), ["logp", "pic50", "qed", "logp"])
    assert some.properties == ["qed", "logp"]  # a data column is not computed
