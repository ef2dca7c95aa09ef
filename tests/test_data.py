import gzip
from dataclasses import replace

import numpy as np
import pytest

from molvae.checkpoint import read_checkpoint
from molvae.config import DataConfig
from molvae.data import (
    DataError,
    bucketed_batches,
    collate,
    prepare,
    read_molecules,
    split,
)
from molvae.vocab import Vocab
from tests.conftest import SHIPPED_MODEL, SHIPPED_TRAIN

ASPIRIN = "CC(=O)Oc1ccccc1C(=O)O"
GOOD = [ASPIRIN, "c1ccccc1O", "CCN(CC)CC", "CC(C)Cc1ccc(cc1)C(C)C(=O)O"]


def _cfg(tmp_path, path, **kw):
    return DataConfig(path=path, cache_dir=tmp_path / "cache", workers=1, **kw)


def _csv(tmp_path, lines, name="m.csv", header="SMILES,pIC50"):
    p = tmp_path / name
    p.write_text("\n".join([header, *lines]) + "\n")
    return p


def test_every_drop_reason_is_counted_and_nothing_else_lost(tmp_path):
    giant = "C" * 500  # a 500-atom molecule: longer than max_tokens
    rows = [f"{s},1.0" for s in GOOD] + ["not_a_smiles,2", ",3", f"{GOOD[0]},4", f"{giant},5",
                                         "OC(=O)c1ccccc1OC(C)=O,6"]
    ds = prepare(_cfg(tmp_path, _csv(tmp_path, rows), property_columns=["pIC50"]))
    assert ds.report["rows"] == 9 and len(ds) == 4
    assert ds.report["dropped"] == {"empty": 1, "bad_encoding": 0, "invalid": 1, "too_long": 1,
                                    "duplicate": 2, "unknown_tokens": 0}
    assert ds.smiles[0] == ASPIRIN
    assert ds.properties["pIC50"].tolist() == [1.0, 1.0, 1.0, 1.0]
    assert ds.tokens.shape[0] == 4 and (ds.lengths == (ds.tokens != 0).sum(1)).all()


def test_non_utf8_bytes_are_counted(tmp_path):
    p = tmp_path / "bytes.csv"
    p.write_bytes(b"SMILES\n" + ASPIRIN.encode() + b"\nCC\xff\xfeO\nCCO\n")
    ds = prepare(_cfg(tmp_path, p))
    assert ds.smiles == [ASPIRIN, "CCO"]
    assert ds.report["dropped"]["bad_encoding"] == 1


def test_empty_file_missing_column_and_nothing_valid(tmp_path):
    empty = tmp_path / "empty.csv"
    empty.write_text("")
    with pytest.raises(DataError, match="empty"):
        prepare(_cfg(tmp_path, empty))
    with pytest.raises(DataError, match="no column 'mol'.*SMILES.*--smiles-column"):
        prepare(_cfg(tmp_path, _csv(tmp_path, GOOD), smiles_column="mol"))
    # a column named in another case is that column (`molvae sample` writes "smiles")
    assert len(prepare(_cfg(tmp_path, _csv(tmp_path, GOOD), smiles_column="smiles")).smiles)
    (tmp_path / "two.csv").write_text("Smiles,smiles\nCCO,CCN\n")  # which one? not guessed
    with pytest.raises(DataError, match="several columns named 'SMILES' in other cases"):
        read_molecules(tmp_path / "two.csv")
    with pytest.raises(DataError, match="no valid molecules left.*2 invalid"):
        prepare(_cfg(tmp_path, _csv(tmp_path, ["xx,1", "yy,2"], name="bad.csv")))
    with pytest.raises(DataError, match="no such file"):
        prepare(_cfg(tmp_path, tmp_path / "absent.csv"))
    with pytest.raises(DataError, match="missing property column"):
        read_molecules(_csv(tmp_path, GOOD), property_columns=["logS"])


def test_truncated_gzip_is_a_clear_error(tmp_path):
    full = gzip.compress(("SMILES\n" + "\n".join(GOOD * 200) + "\n").encode())
    p = tmp_path / "cut.csv.gz"
    p.write_bytes(full[: len(full) // 2])
    with pytest.raises(DataError, match="truncated"):
        prepare(_cfg(tmp_path, p))


def test_smi_tsv_and_gz_forms(tmp_path):
    smi = tmp_path / "m.smi"
    smi.write_text(f"{ASPIRIN} aspirin\nc1ccccc1O phenol\n\n")
    m = read_molecules(smi)
    assert m.smiles == [ASPIRIN, "c1ccccc1O"] and m.others.name.tolist() == ["aspirin", "phenol"]
    tsv = tmp_path / "m.tsv.gz"
    tsv.write_bytes(gzip.compress(f"id\tsmi\n1\t{ASPIRIN}\n2\tCCO\n".encode()))
    assert read_molecules(tsv, smiles_column="smi").smiles == [ASPIRIN, "CCO"]
    named_csv = tmp_path / "gzip_data.csv"  # gzip data under a .csv name: read as gzip
    named_csv.write_bytes(gzip.compress(f"SMILES\n{ASPIRIN}\n".encode()))
    assert read_molecules(named_csv).smiles == [ASPIRIN]
    with pytest.raises(DataError, match="unsupported file type"):
        read_molecules(_csv(tmp_path, GOOD, name="m.xlsx"))


def test_tokens_outside_a_given_vocab_are_skipped_and_counted(tmp_path):
    vocab = Vocab.build(["[C][C][O]"])
    ds = prepare(_cfg(tmp_path, _csv(tmp_path, ["CCO,1", "CCCl,2", "OCC,3"])), vocab=vocab)
    assert ds.smiles == ["CCO"]
    assert ds.report["dropped"]["unknown_tokens"] == 1 and ds.report["dropped"]["duplicate"] == 1


def test_cache_is_keyed_by_content_and_settings(tmp_path):
    p = _csv(tmp_path, [f"{s},1" for s in GOOD])
    first = prepare(_cfg(tmp_path, p))
    assert prepare(_cfg(tmp_path, p)).key == first.key
    assert len(list((tmp_path / "cache").glob("*.npz"))) == 1
    assert prepare(_cfg(tmp_path, p, max_tokens=50)).key != first.key
    p.write_text(p.read_text() + "CCO,2\n")
    again = prepare(_cfg(tmp_path, p))
    assert again.key != first.key and len(again) == 5


def test_standardize_option(tmp_path):
    p = _csv(tmp_path, ["CC(=O)[O-].[Na+],1"])
    assert prepare(_cfg(tmp_path, p, standardize=True)).smiles == ["CC(=O)O"]


def test_parallel_clean_matches_serial(tmp_path):
    p = _csv(tmp_path, [f"{s}{'C' * (i % 7)},1" for i, s in enumerate(GOOD * 600)])
    serial = prepare(_cfg(tmp_path, p), use_cache=False)
    par = prepare(DataConfig(path=p, cache_dir=tmp_path / "c2", workers=2), use_cache=False)
    assert serial.smiles == par.smiles and (serial.tokens == par.tokens).all()


def test_bucketed_batches_cover_every_molecule_once():
    lengths = np.random.default_rng(0).integers(5, 60, size=5000)
    batches = bucketed_batches(lengths, 100, np.random.default_rng(1))
    assert sorted(np.concatenate(batches).tolist()) == list(range(5000))
    spread = np.mean([lengths[b].max() - lengths[b].min() for b in batches])
    assert spread < 5  # similar lengths in a batch: little padding


def test_split_and_collate(tmp_path):
    ds = prepare(_cfg(tmp_path, _csv(tmp_path, [f"{s},1" for s in GOOD])))
    tr, va = split(ds, 0.25, seed=0)
    assert len(tr) == 3 and len(va) == 1 and set(tr.smiles) | set(va.smiles) == set(ds.smiles)
    tokens, lengths = collate(ds, np.array([0, 1]))
    assert tokens.shape[1] == lengths.max() and tokens.dtype == np.int64


@pytest.mark.slow
def test_token_file_round_trip_and_training_without_rdkit(tmp_path, run_main):
    """`data prepare --export` writes a token file that `data.path` takes as it is, with the
    properties it was asked for (float16) in the vocabulary of the model named; training a
    conditional model from it imports no RDKit (the GPU machine has none)."""
    import subprocess
    import sys

    from molvae.config import DataConfig
    from molvae.data import export_tokens, prepare

    cfg = DataConfig(path=SHIPPED_TRAIN, limit=400, cache_dir=tmp_path / "cache")
    ds = prepare(cfg, compute_properties=["logp", "mw"])
    rc, out, err = run_main("data", "prepare", str(SHIPPED_TRAIN), "--set", "data.limit=400",
                            "--cache-dir", str(tmp_path / "cache"), "--properties", "logp, mw",
                            "--vocab-of", str(SHIPPED_MODEL), "--export", str(tmp_path / "t.npz"))
    assert rc == 0, err
    path = tmp_path / "t.npz"
    back = prepare(DataConfig(path=path, limit=300, cache_dir=tmp_path / "cache2"))
    assert len(back) == 300 and back.smiles == ds.smiles[:300]
    assert back.vocab.to_list() == read_checkpoint(SHIPPED_MODEL)["vocab"]
    for name in ("logp", "mw"):
        assert back.properties[name].dtype == np.float32
        assert np.allclose(back.properties[name], ds.properties[name][:300], rtol=1e-3, atol=2e-3)
    big = replace(ds, properties={"ic50_nm": np.linspace(1.0, 2e5, len(ds), dtype=np.float32)})
    kept = prepare(DataConfig(path=export_tokens(big, tmp_path / "big.npz"))).properties
    assert np.array_equal(kept["ic50_nm"], big.properties["ic50_nm"])  # too big for float16
    with pytest.raises(DataError, match="must end in .npz"):
        export_tokens(ds, tmp_path / "tokens.csv")
    (tmp_path / "junk.npz").write_bytes(b"not a zip")
    with pytest.raises(DataError, match="not a molvae token file"):
        prepare(DataConfig(path=tmp_path / "junk.npz"))
    with pytest.raises(DataError, match="lacks properties qed"):
        prepare(DataConfig(path=path), compute_properties=["logp", "qed"])
    code = f"""
import sys
sys.modules["rdkit"] = None  # any RDKit import now fails
from molvae.config import DataConfig, ModelConfig, TrainConfig
from molvae.train import train_model
r = train_model(DataConfig(path=r"{path}"), ModelConfig(embedding_size=8, encoder_hidden_size=8,
                latent_size=4, decoder_hidden_size=16, conditions=["logp", "mw"]),
                TrainConfig(epochs=1, batch_size=64, out_dir=r"{tmp_path / 'run'}", threads=1,
                            recon_eval_size=0, prior_codes=50, amp=True))
print("ok", len(r.history))
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.stdout.strip() == "ok 1", out.stderr[-2000:]


def test_prepare_refuses_unknown_properties_and_unreadable_vocabularies(tmp_path, run_main):
    args = ("data", "prepare", str(SHIPPED_TRAIN), "--set", "data.limit=50",
            "--cache-dir", str(tmp_path / "c"))
    rc, _, err = run_main(*args, "--properties", "logp,potency")
    assert rc == 1 and "potency" in err and len(err.strip().splitlines()) == 1, err
    rc, _, err = run_main(*args, "--vocab-of", str(tmp_path / "none.pt"))
    assert rc == 1 and "none.pt" in err and len(err.strip().splitlines()) == 1, err
    (tmp_path / "bad.pt").write_bytes(b"junk")
    rc, _, err = run_main(*args, "--vocab-of", str(tmp_path / "bad.pt"))
    assert rc == 1 and "not a readable molvae checkpoint" in err, err


def test_preparation_reports_each_stage_and_a_cache_hit_none(tmp_path):
    """progress(stage, total) -> update(n): cleaning, then the computed properties (the
    training bars of a conditional model), each counted to its total; a cache hit reports
    nothing."""
    seen: dict[str, list[int]] = {}

    def progress(stage: str, total: int):
        seen[stage] = [total, 0]
        return lambda n: seen[stage].__setitem__(1, seen[stage][1] + n)

    rows = [f"{s},1" for s in GOOD] + ["junk,2"]
    cfg = _cfg(tmp_path, _csv(tmp_path, rows))
    ds = prepare(cfg, compute_properties=["logp", "qed"], progress=progress)
    assert list(seen) == ["clean+encode", "properties"]
    assert seen == {"clean+encode": [5, 5], "properties": [4, 4]}
    assert ds.properties["logp"].shape == (4,)
    seen.clear()
    prepare(cfg, compute_properties=["logp", "qed"], progress=progress)
    assert seen == {}
