"""The MOSES benchmark files: download the full sets, draw seeded samples of rows."""

from __future__ import annotations

import gzip
import os
import zipfile
import zlib
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd

from .errors import DataError
from .files import atomic_path

MOSES_WHEEL = "molsets==0.3.1"
# Molecules per file. test_scaffolds.csv.gz has 176,226 lines: 176,225 molecules + header.
MOSES_SETS = {"train": 1_584_663, "test": 176_074, "test_scaffolds": 176_225}


def fetch_moses(dest: str | Path, progress: Callable[[str], None] | None = None) -> dict[str, Path]:
    """Put the full MOSES sets in ``dest`` as ``{train,test,test_scaffolds}.csv.gz``.

    Downloads the molsets 0.3.1 wheel through the package index without its dependencies
    (its pomegranate pin does not build on Python 3.11) and reads the CSVs out of the zip;
    ``moses`` is never imported. Idempotent: files with the right row counts are kept.
    """
    import subprocess
    import sys
    import tempfile

    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    targets = {name: dest / f"{name}.csv.gz" for name in MOSES_SETS}
    if all(p.is_file() and _count_rows(p) == MOSES_SETS[n] for n, p in targets.items()):
        return targets
    with tempfile.TemporaryDirectory() as tmp:
        if progress:
            progress(f"downloading {MOSES_WHEEL} (no dependencies) through the package index")
        cmd = [sys.executable, "-m", "pip", "download", MOSES_WHEEL, "--no-deps",
               "--disable-pip-version-check", "-q", "-d", tmp]
        proc = subprocess.run(cmd, capture_output=True, text=True)
        wheels = list(Path(tmp).glob("molsets-*.whl"))
        if proc.returncode != 0 or not wheels:
            last = (proc.stderr.strip().splitlines() or ["no output"])[-1]
            raise DataError(f"cannot download {MOSES_WHEEL} from the package index: {last}")
        with zipfile.ZipFile(wheels[0]) as zf:
            for name, path in targets.items():
                blob = zf.read(f"moses/dataset/data/{name}.csv.gz")
                tmp_path = path.with_name(path.name + ".tmp")
                tmp_path.write_bytes(blob)
                rows = _count_rows(tmp_path)
                if rows != MOSES_SETS[name]:
                    tmp_path.unlink()
                    raise DataError(f"MOSES {name}: {rows} rows, expected {MOSES_SETS[name]}")
                os.replace(tmp_path, path)
                if progress:
                    progress(f"{path}: {rows} molecules")
    return targets


def _count_rows(path: Path) -> int:
    with gzip.open(path, "rt") as fh:
        return sum(1 for _ in fh) - 1  # header


def _read_rows(path: str | Path) -> pd.DataFrame:
    try:
        return pd.read_csv(path, dtype=str, keep_default_na=False)
    except (OSError, EOFError, zlib.error, UnicodeDecodeError, pd.errors.ParserError,
            pd.errors.EmptyDataError) as exc:
        raise DataError(f"{path}: cannot read ({type(exc).__name__}: {exc})") from None


def sample_rows(src: str | Path, dest: str | Path, n: int, seed: int,
                exclude: str | Path | None = None) -> int:
    """Write ``n`` rows drawn without replacement (numpy seed ``seed``) from a CSV(.gz),
    keeping the header and the original order of the drawn rows. With ``exclude`` (a CSV
    with the same first column), rows whose first value appears there are never drawn:
    e.g. a held-out set disjoint from a shipped sample."""
    df = _read_rows(src)
    if exclude is not None:
        taken = set(_read_rows(exclude).iloc[:, 0])
        df = df[~df.iloc[:, 0].isin(taken)]
    if n > len(df):
        raise DataError(f"{src}: asked for {n} rows, file has {len(df)}"
                        + (" outside the excluded ones" if exclude is not None else ""))
    idx = np.sort(np.random.default_rng(seed).choice(len(df), size=n, replace=False))
    with atomic_path(dest) as tmp:  # a Ctrl-C leaves no half-written sample
        df.iloc[idx].to_csv(tmp, index=False,
                            compression="gzip" if str(dest).lower().endswith(".gz") else None)
    return n
