"""Files -> clean (chem) -> encode (vocab) -> cached token arrays; batching.

Every dropped row is counted by reason (``invalid``, ``empty``, ``duplicate``, ``too_long``,
``unknown_tokens``, ``bad_encoding``); a bad row never stops a run.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import logging
import os
import zlib
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from .config import DataConfig
from .errors import DataError
from .parallel import map_chunks
from .vocab import Vocab, smiles_to_selfies, tokenize_selfies

logger = logging.getLogger(__name__)

CACHE_VERSION = 2
DROP_REASONS = ("empty", "bad_encoding", "invalid", "too_long", "duplicate", "unknown_tokens")


@dataclass
class Molecules:
    """Raw rows read from a file: SMILES (None for empty cells), optional properties, and the
    file's other columns as read (a .smi file's names: ``name``), for outputs that keep them."""

    smiles: list[str | None]
    properties: dict[str, np.ndarray] = field(default_factory=dict)
    others: pd.DataFrame | None = None


@dataclass
class EncodedDataset:
    """Cleaned, encoded molecules. ``tokens``: (N, L) ids with <bos>/<eos>, <pad> after."""

    smiles: list[str]
    tokens: np.ndarray  # (N, L) uint8/int16
    lengths: np.ndarray  # (N,) tokens incl. <bos> and <eos>
    vocab: Vocab
    properties: dict[str, np.ndarray] = field(default_factory=dict)  # name -> (N,) float32
    report: dict = field(default_factory=dict)
    key: str = ""

    def __len__(self) -> int:
        return len(self.smiles)

    def subset(self, idx: np.ndarray) -> EncodedDataset:
        return EncodedDataset(
            smiles=[self.smiles[i] for i in idx], tokens=self.tokens[idx],
            lengths=self.lengths[idx], vocab=self.vocab,
            properties={k: v[idx] for k, v in self.properties.items()},
            report=self.report, key=self.key,
        )


# --------------------------------------------------------------------------- reading


def _open_text(path: Path) -> io.TextIOBase:
    """Text of a file, gunzipped when it is gzip data, whatever its name says."""
    with open(path, "rb") as fh:
        gzipped = path.suffix == ".gz" or fh.read(2) == b"\x1f\x8b"
    raw = gzip.open(path, "rb") if gzipped else open(path, "rb")
    return io.TextIOWrapper(raw, encoding="utf-8", errors="replace", newline="")


def _base_suffix(path: Path) -> str:
    suffixes = [s.lower() for s in path.suffixes]
    if suffixes and suffixes[-1] == ".gz":
        suffixes = suffixes[:-1]
    return suffixes[-1] if suffixes else ""


def read_molecules(path: str | Path, smiles_column: str = "SMILES", property_columns: Sequence[str] = (),
                   limit: int | None = None, others: bool = False) -> Molecules:
    """Read CSV/TSV (named SMILES column, optional property columns) or .smi/.txt
    (SMILES then an optional name per line), plain or .gz; with ``others``, the file's other
    columns too (``Molecules.others``: a copy, so only for the outputs that keep them; a .smi
    file's names always, as they are read anyway).

    Undecodable bytes become U+FFFD, so such a row is counted as ``bad_encoding`` later
    instead of stopping the read.
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: no such file")
    kind = _base_suffix(path)
    if kind == ".parquet":
        return _read_parquet(path, smiles_column, property_columns, limit, others)
    try:
        with _open_text(path) as fh:
            if kind in (".smi", ".txt", ".smiles"):
                return _read_smi(fh, limit)
            if kind not in (".csv", ".tsv"):
                raise DataError(
                    f"{path}: unsupported file type {kind!r} (use .csv, .tsv, .smi, .txt, .parquet)")
            sep = "\t" if kind == ".tsv" else ","
            try:
                df = pd.read_csv(fh, sep=sep, dtype=str, keep_default_na=False, nrows=limit)
            except pd.errors.EmptyDataError:
                raise DataError(f"{path}: file is empty") from None
    except (EOFError, gzip.BadGzipFile, zlib.error, OSError) as exc:
        if isinstance(exc, DataError):
            raise
        raise DataError(f"{path}: cannot read ({type(exc).__name__}: {exc}); is it truncated?") from None
    except pd.errors.ParserError as exc:
        raise DataError(f"{path}: malformed {kind[1:].upper()} ({exc})") from None
    smiles_column = smiles_column_of(path, df.columns, smiles_column)
    missing = [c for c in property_columns if c not in df.columns]
    if missing:
        raise DataError(f"{path}: missing property column(s) {', '.join(missing)}")
    smiles = [s.strip() or None for s in df[smiles_column].tolist()]
    props = {c: pd.to_numeric(df[c], errors="coerce").to_numpy(np.float32) for c in property_columns}
    if not smiles:
        raise DataError(f"{path}: file has no rows")
    return Molecules(smiles=smiles, properties=props,
                     others=df.drop(columns=[smiles_column]) if others else None)


COLUMN_HINT = "name the SMILES column with --smiles-column or data.smiles_column"


def smiles_column_of(path: str | Path, columns: Sequence, name: str) -> str:
    """``name`` if the file has that column, else its one column of that name in another
    case (``molvae sample`` writes ``smiles``, MOSES files ``SMILES``)."""
    if name in columns:
        return name
    same = [str(c) for c in columns if str(c).lower() == name.lower()]
    if len(same) == 1:
        return same[0]
    if same:
        raise DataError(f"{path}: several columns named {name!r} in other cases "
                        f"({', '.join(same)}); {COLUMN_HINT}")
    cols = ", ".join(map(str, list(columns)[:10]))
    raise DataError(f"{path}: no column {name!r} (columns: {cols}); {COLUMN_HINT}")


def _read_parquet(path: Path, smiles_column: str, property_columns: Sequence[str],
                  limit: int | None, others: bool) -> Molecules:
    try:
        df = pd.read_parquet(path)
    except Exception as exc:  # pyarrow raises several types for damaged files
        raise DataError(f"{path}: cannot read Parquet ({type(exc).__name__})") from None
    smiles_column = smiles_column_of(path, df.columns, smiles_column)
    df = df.head(limit) if limit else df
    smiles = [s.strip() or None if isinstance(s, str) else None for s in df[smiles_column]]
    props = {c: pd.to_numeric(df[c], errors="coerce").to_numpy(np.float32) for c in property_columns}
    rest = df.drop(columns=[smiles_column]).reset_index(drop=True) if others else None
    return Molecules(smiles=smiles, properties=props, others=rest)


def _read_smi(fh, limit: int | None) -> Molecules:
    smiles: list[str | None] = []
    names: list[str] = []
    for i, line in enumerate(fh):
        parts = line.split(None, 1)
        if i == 0 and parts and parts[0].lower() == "smiles":
            continue  # header
        if not parts:
            continue
        smiles.append(parts[0])
        names.append(parts[1].strip() if len(parts) > 1 else "")
        if limit and len(smiles) >= limit:
            break
    if not smiles:
        raise DataError(f"{getattr(fh, 'name', 'input')}: file has no molecules")
    return Molecules(smiles=smiles, others=pd.DataFrame({"name": names}) if any(names) else None)


def file_digest(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


# --------------------------------------------------------------------------- cleaning


def _clean_one(smiles: str | None, standardize: bool, max_tokens: int) -> tuple[str, str] | str:
    """(canonical SMILES, SELFIES) or the drop reason."""
    from . import chem  # here, not at import: training from a token file needs no RDKit

    if smiles is None or not smiles.strip():
        return "empty"
    if "\ufffd" in smiles:
        return "bad_encoding"
    mol = chem.to_mol(smiles)
    if mol is None:
        return "invalid"
    if standardize:
        mol = chem.standardize_mol(mol)
        if mol is None:
            return "invalid"
    if mol.GetNumAtoms() > max_tokens:  # every atom costs at least one SELFIES token
        return "too_long"
    from rdkit import Chem

    can = Chem.MolToSmiles(mol)
    sel = smiles_to_selfies(can)
    if sel is None:
        return "invalid"
    if sel.count("[") > max_tokens:  # one '[' per SELFIES token
        return "too_long"
    return can, sel


def _clean_chunk(chunk: list[str | None], standardize: bool, max_tokens: int) -> list:
    return [_clean_one(s, standardize, max_tokens) for s in chunk]


def clean(
    smiles: Sequence[str | None],
    standardize: bool = False,
    max_tokens: int = 100,
    workers: int | None = None,
    progress: Callable[[int], None] | None = None,
    chunk_size: int = 2000,
) -> tuple[list[int], list[str], list[str], Counter]:
    """Canonicalize and SELFIES-encode over all cores; drop and count bad/duplicate rows.

    Returns (kept row indices, canonical SMILES, SELFIES, Counter of drop reasons).
    """
    results = map_chunks(_clean_chunk, list(smiles), standardize, max_tokens,
                         chunk_size=chunk_size, workers=workers, progress=progress)
    drops: Counter = Counter()
    seen: set[str] = set()
    keep, can_list, sel_list = [], [], []
    for i, r in enumerate(results):
        if isinstance(r, str):
            drops[r] += 1
            continue
        can, sel = r
        if can in seen:
            drops["duplicate"] += 1
            continue
        seen.add(can)
        keep.append(i)
        can_list.append(can)
        sel_list.append(sel)
    return keep, can_list, sel_list, drops


# --------------------------------------------------------------------------- prepare + cache


def _cache_key(cfg: DataConfig, digest: str, vocab: Vocab | None, props: Sequence[str]) -> str:
    settings = {
        "version": CACHE_VERSION,
        "digest": digest,
        "smiles_column": cfg.smiles_column,
        "property_columns": list(cfg.property_columns),
        "standardize": cfg.standardize,
        "max_tokens": cfg.max_tokens,
        "limit": cfg.limit,
        "vocab": vocab.to_list() if vocab else None,
        "computed_properties": list(props),
    }
    blob = json.dumps(settings, sort_keys=True).encode()
    return hashlib.sha256(blob).hexdigest()[:20]


def prepare(
    cfg: DataConfig,
    vocab: Vocab | None = None,
    compute_properties: Sequence[str] = (),
    progress: Callable[[str, int], Callable[[int], object]] | None = None,
    use_cache: bool = True,
) -> EncodedDataset:
    """Load -> clean -> encode ``cfg.path``; cached on disk by content + settings.

    ``progress(stage, total)`` is called as each stage starts ("clean+encode", then
    "properties" when any are computed) and returns ``update(n)``, called as n more
    molecules are done (``molvae.cli.common.StageBars``: one bar per stage)
    """
    path = Path(cfg.path)
    if not path.is_file():
        raise DataError(f"{path}: no such file")
    if path.suffix.lower() == ".npz":
        return _read_token_file(path, cfg, vocab, compute_properties)
    from . import chem

    for p in compute_properties:
        chem.check_property(p)
    key = _cache_key(cfg, file_digest(path), vocab, compute_properties)
    cache_file = Path(cfg.cache_dir) / f"{key}.npz"
    if use_cache and cache_file.is_file():
        try:
            ds = load_cache(cache_file)
            logger.info("loaded %d molecules from cache %s", len(ds), cache_file)
            return ds
        except Exception as exc:  # a damaged cache is rebuilt, not fatal
            logger.warning("cache %s unreadable (%s); rebuilding", cache_file, exc)

    mols = read_molecules(path, cfg.smiles_column, cfg.property_columns, cfg.limit)
    total = len(mols.smiles)
    tick = progress("clean+encode", total) if progress else None
    keep, can, sel, drops = clean(mols.smiles, cfg.standardize, cfg.max_tokens, cfg.workers, tick)
    tokens, lengths, vocab_out, ok = tokenize_selfies(sel, vocab)
    drops["unknown_tokens"] += int((~ok).sum())
    keep_idx = np.asarray(keep, dtype=np.int64)[ok]
    smiles = [s for s, k in zip(can, ok, strict=True) if k]
    if not smiles:
        raise DataError(f"{path}: no valid molecules left after cleaning ({_drop_text(drops)})")
    props = {c: v[keep_idx] for c, v in mols.properties.items()}
    if compute_properties:
        tick = progress("properties", len(smiles)) if progress else None
        rows = chem.score_smiles(smiles, filters=(), property_names=compute_properties,
                                 workers=cfg.workers, progress=tick)
        props.update({p: np.array([r[p] for r in rows], dtype=np.float32)
                      for p in compute_properties})
    report = {"path": str(path), "rows": total, "kept": len(smiles),
              "dropped": {r: int(drops.get(r, 0)) for r in DROP_REASONS}}
    ds = EncodedDataset(smiles, tokens, lengths, vocab_out, props, report, key)
    logger.info("prepared %s: kept %d of %d (%s)", path, len(smiles), total, _drop_text(drops))
    if use_cache:
        save_cache(ds, cache_file)
    return ds


def _read_token_file(path: Path, cfg: DataConfig, vocab: Vocab | None,
                     compute_properties: Sequence[str]) -> EncodedDataset:
    """A dataset exported by ``export_tokens``: used as it is (no cleaning, no RDKit)."""
    try:
        ds = load_cache(path)
    except DataError:  # ours, but of another cache version: its message says so
        raise
    except Exception as exc:  # not an npz, or not ours
        raise DataError(f"{path}: not a molvae token file ({type(exc).__name__})") from None
    if vocab is not None and ds.vocab != vocab:
        raise DataError(f"{path}: its vocabulary differs from the model's")
    missing = [p for p in (*compute_properties, *cfg.property_columns) if p not in ds.properties]
    if missing:
        raise DataError(f"{path}: token file lacks properties {', '.join(missing)}")
    if cfg.limit is not None and cfg.limit < len(ds):
        ds = ds.subset(np.arange(cfg.limit))
    logger.info("loaded %d molecules from token file %s", len(ds), path)
    return ds


def export_tokens(ds: EncodedDataset, path: str | Path) -> Path:
    """Write ``ds`` as a compressed token file (``data.path`` can name it: training then
    needs neither the source file nor RDKit; ~20x smaller than the cache; properties in
    float16)."""
    path = Path(path)
    if path.suffix.lower() != ".npz":
        raise DataError(f"{path}: a token file must end in .npz")
    save_cache(ds, path, compress=True)
    return path


def _drop_text(drops: Counter) -> str:
    parts = [f"{drops[r]} {r}" for r in DROP_REASONS if drops.get(r)]
    return "dropped " + ", ".join(parts) if parts else "nothing dropped"


def save_cache(ds: EncodedDataset, path: Path, compress: bool = False) -> None:
    """Write atomically (temp file + rename) so an interrupted run leaves no half file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    meta = {"version": CACHE_VERSION, "vocab": ds.vocab.to_list(), "report": ds.report,
            "key": ds.key, "properties": list(ds.properties)}
    smiles_blob = np.frombuffer("\n".join(ds.smiles).encode(), dtype=np.uint8)
    arrays = {f"prop_{k}": _half(v) if compress else v for k, v in ds.properties.items()}
    tmp = path.with_name(path.name + f".tmp{os.getpid()}")
    with open(tmp, "wb") as fh:
        (np.savez_compressed if compress else np.savez)(
            fh, tokens=ds.tokens, lengths=ds.lengths, smiles=smiles_blob,
            meta=np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8), **arrays)
    os.replace(tmp, path)


def _half(values: np.ndarray) -> np.ndarray:
    """A token file's property column in float16 (a third of the size; logP to ~0.004, MW
    to ~0.25: precise enough for conditions), unless that would overflow (a data column of
    values beyond 65,504 stays float32)."""
    finite = np.abs(values[np.isfinite(values)])
    if finite.size and finite.max() > np.finfo(np.float16).max:
        return values  # (checked first: the cast itself would warn of the overflow)
    return values.astype(np.float16)


def load_cache(path: str | Path) -> EncodedDataset:
    with np.load(path, allow_pickle=False) as z:
        meta = json.loads(z["meta"].tobytes().decode())
        if meta.get("version") != CACHE_VERSION:
            raise DataError(f"{path}: cache version {meta.get('version')} != {CACHE_VERSION}")
        smiles = z["smiles"].tobytes().decode().split("\n")
        props = {k: z[f"prop_{k}"].astype(np.float32) for k in meta["properties"]}
        return EncodedDataset(
            smiles=smiles,
            tokens=z["tokens"],
            lengths=z["lengths"],
            vocab=Vocab(meta["vocab"]),
            properties=props,
            report=meta["report"],
            key=meta["key"],
        )


def split(ds: EncodedDataset, val_fraction: float, seed: int) -> tuple[EncodedDataset, EncodedDataset]:
    """Random train/validation split (fixed by ``seed``)."""
    rng = np.random.default_rng(seed)
    perm = rng.permutation(len(ds))
    n_val = max(1, int(round(len(ds) * val_fraction))) if len(ds) > 1 else 0
    return ds.subset(np.sort(perm[n_val:])), ds.subset(np.sort(perm[:n_val]))


# --------------------------------------------------------------------------- batching


def bucketed_batches(
    lengths: np.ndarray, batch_size: int, rng: np.random.Generator, bucket_factor: int = 50
) -> list[np.ndarray]:
    """Index batches of similar length so padding costs little; batch order shuffled."""
    perm = rng.permutation(len(lengths))
    batches = []
    span = batch_size * bucket_factor
    for start in range(0, len(perm), span):
        chunk = perm[start : start + span]
        chunk = chunk[np.argsort(lengths[chunk], kind="stable")]
        batches.extend(chunk[i : i + batch_size] for i in range(0, len(chunk), batch_size))
    order = rng.permutation(len(batches))
    return [batches[i] for i in order]


def sequential_batches(n: int, batch_size: int) -> list[np.ndarray]:
    return [np.arange(i, min(i + batch_size, n)) for i in range(0, n, batch_size)]


def collate(ds: EncodedDataset, idx: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(B, Lmax) int64 tokens trimmed to the batch's longest molecule, and lengths."""
    lengths = ds.lengths[idx]
    width = int(lengths.max())
    return ds.tokens[idx, :width].astype(np.int64), lengths.astype(np.int64)
