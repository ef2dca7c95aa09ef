import pandas as pd
import pytest

from molvae.errors import DataError
from molvae.moses import sample_rows


def _csv(path, rows):
    path.write_text("SMILES,x\n" + "".join(f"{r},{i}\n" for i, r in enumerate(rows)))
    return path


def test_sample_rows_seeded_in_order_and_disjoint_from_an_excluded_file(tmp_path):
    src = _csv(tmp_path / "all.csv", [f"C{'C' * i}O" for i in range(20)])
    taken = _csv(tmp_path / "taken.csv", [f"C{'C' * i}O" for i in range(0, 20, 2)])  # the evens
    assert sample_rows(src, tmp_path / "a.csv", 5, seed=1, exclude=taken) == 5
    a = pd.read_csv(tmp_path / "a.csv")
    assert list(a.columns) == ["SMILES", "x"] and a["x"].is_monotonic_increasing
    assert set(a["x"]) <= set(range(1, 20, 2))  # only rows not in the excluded file
    sample_rows(src, tmp_path / "b.csv", 5, seed=1, exclude=taken)
    assert pd.read_csv(tmp_path / "b.csv").equals(a)  # same seed, same rows
    with pytest.raises(DataError, match="asked for 11 rows, file has 10 outside the excluded"):
        sample_rows(src, tmp_path / "c.csv", 11, seed=1, exclude=taken)


def test_sample_rows_bad_files(tmp_path):
    bad = tmp_path / "bad.csv.gz"
    bad.write_bytes(b"\x1f\x8b\x08\x00 truncated")
    with pytest.raises(DataError, match="cannot read"):
        sample_rows(bad, tmp_path / "o.csv", 1, seed=0)
    with pytest.raises(DataError, match="cannot read"):
        sample_rows(tmp_path, tmp_path / "o.csv", 1, seed=0)  # a directory
