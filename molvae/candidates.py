"""Candidate tables: annotate (properties, filters, uniqueness, novelty, score), ranking."""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import pandas as pd
from rdkit import DataStructs

from . import chem
from .checkpoint import LoadedModel
from .config import ScoreConfig
from .errors import ConfigError, DataError, ScoringError
from .similarity import FingerprintIndex


def _property_names(score_cfg: ScoreConfig) -> list[str] | None:
    """The configured properties and those the desirability needs (None: all)."""
    names = score_cfg.properties
    if names is None:
        return None
    return list(dict.fromkeys([*names, *(t.property for t in score_cfg.desirability)]))


def prepare_scoring(score_cfg: ScoreConfig) -> None:
    """``chem.prepare_panel`` for what ``annotate`` computes under ``score_cfg``."""
    chem.prepare_panel(score_cfg.filters, _property_names(score_cfg))


def check_novelty(score_cfg: ScoreConfig, loaded: LoadedModel | None):
    """``loaded``'s novelty test, or None where novelty is unknown (no model, or one without
    its training-set hashes); the novelty filter without one: ScoringError, before any work."""
    is_novel = loaded.novelty_test() if loaded is not None else None
    if is_novel is None and "novelty" in score_cfg.filters:
        where = loaded.path if loaded is not None and loaded.path else "the model"
        raise ScoringError(f"score.filters has 'novelty' but {where} has no training-set hashes "
                           "(its train_hashes_*.npy file belongs beside it)")
    return is_novel


def with_requested(score_cfg: ScoreConfig, names: Sequence[str]) -> ScoreConfig:
    """``score_cfg`` with the RDKit properties among ``names`` (a request's) added where it
    lists only some (None or an empty list scores all), so that the request's hits can be counted."""
    listed = score_cfg.properties or []
    add = [k for k in dict.fromkeys(names) if k in chem.PROPERTIES and k not in listed]
    if not (listed and add):
        return score_cfg
    return score_cfg.model_copy(update={"properties": [*score_cfg.properties, *add]})


def annotate(df: pd.DataFrame, score_cfg: ScoreConfig, loaded: LoadedModel | None = None,
             workers: int | None = None, progress: Callable[[int], None] | None = None
             ) -> pd.DataFrame:
    """Add unique, novel (vs the model's training set; no column where that is unknown: a
    model without its training-set hashes), the configured properties (all by default),
    every filter (``pass_*``), ``pass_all``, ``reasons`` (why each failed filter failed)
    and the desirability ``score``. Input order kept."""
    is_novel = check_novelty(score_cfg, loaded)
    rows = chem.score_smiles(df["smiles"].tolist(), score_cfg.filters, score_cfg.windows,
                             property_names=_property_names(score_cfg),
                             workers=workers or score_cfg.workers, progress=progress,
                             reasons=True)
    scored = pd.DataFrame(rows).drop(columns=["smiles", "valid"])
    out = pd.concat([df.reset_index(drop=True), scored], axis=1)
    valid = out["valid"].to_numpy(bool)
    first = ~out["smiles"].duplicated()
    out["unique"] = valid & first.to_numpy()
    if is_novel is not None:
        novel = np.zeros(len(out), dtype=bool)
        if valid.any():
            novel[valid] = is_novel(out.loc[valid, "smiles"].tolist())
        out["novel"] = novel
    if "reference" in score_cfg.filters and score_cfg.reference_smiles:
        out["reference_similarity"] = max_similarity(out["smiles"].tolist(),
                                                     score_cfg.reference_smiles)
        out["pass_reference"] = out["reference_similarity"] >= score_cfg.min_reference_similarity
    if "novelty" in score_cfg.filters:
        out["pass_novelty"] = out["novel"]
    if "uniqueness" in score_cfg.filters:
        out["pass_uniqueness"] = out["unique"]
    context = {"novelty": "a training molecule", "uniqueness": "a duplicate",
               "reference": f"similarity < {score_cfg.min_reference_similarity:g}"}
    for name, why in context.items():
        if f"pass_{name}" in out:
            failed = valid & ~out[f"pass_{name}"].to_numpy(bool)
            out.loc[failed, "reasons"] = [f"{r}; {name}: {why}" if r else f"{name}: {why}"
                                          for r in out.loc[failed, "reasons"]]
    pass_cols = [c for c in out.columns if c.startswith("pass_") and c != "pass_all"]
    out["pass_all"] = valid & out[pass_cols].all(axis=1).to_numpy() if pass_cols else valid
    props = [p for p in chem.PROPERTIES if p in out.columns]
    values = [dict(zip(props, r, strict=True)) for r in out[props].to_numpy()]
    terms = score_cfg.desirability
    out["score"] = [chem.composite_score(v, terms) if ok else 0.0
                    for v, ok in zip(values, valid, strict=True)]
    out["score_margin"] = [chem.score_margin(v, terms) if ok else -np.inf
                           for v, ok in zip(values, valid, strict=True)]
    return out


def check_molecules(key: str, smiles: Sequence[str]) -> None:
    """Every molecule a setting ``key`` lists is one RDKit reads; else ConfigError."""
    for s in smiles:
        if chem.to_mol(s) is None:
            raise ConfigError(f"{key}: {s!r} is not a valid molecule")


def check_score_config(score_cfg: ScoreConfig) -> None:
    """Fail before any work on what annotating would fail on (an unknown property or filter,
    a known-molecules file that is not there) or would make of every molecule a failure (a
    window with low > high, the reference filter without valid reference molecules)."""
    for t in score_cfg.desirability:
        if t.scorer is not None:
            raise ConfigError(f"score.desirability: term {t.name!r} has a scorer; the ranking "
                              "takes built-in properties (scorers are optimization objectives)")
    for name in [*(score_cfg.properties or []), *score_cfg.windows,
                 *(t.property for t in score_cfg.desirability)]:
        chem.check_property(name)
    chem.check_filters(score_cfg.filters)
    for name, (lo, hi) in score_cfg.windows.items():
        if lo > hi:  # every molecule would fail the windows filter
            raise ConfigError(f"score.windows: {name} = [{lo:g}, {hi:g}] has low > high")
    if "reference" in score_cfg.filters and not score_cfg.reference_smiles:
        raise ConfigError("score.filters has 'reference': give the molecules to be similar to "
                          "(score.reference_smiles)")
    check_molecules("score.reference_smiles", score_cfg.reference_smiles)
    path = score_cfg.known_molecules
    if path is not None and not Path(path).is_file():
        raise DataError(f"score.known_molecules: no such file {path} (the molecules each "
                        "candidate's nearest known molecule is looked up in; \"\" = none)")
    if path is not None:  # its header only: the search would fail after all the scoring
        try:
            columns = [str(c) for c in pd.read_csv(path, nrows=0).columns]
        except (OSError, ValueError) as exc:
            raise DataError(f"score.known_molecules: cannot read {path} ({exc})") from None
        if score_cfg.known_smiles_column.lower() not in {c.lower() for c in columns}:
            raise ConfigError(f"score.known_smiles_column: {path} has no column "
                              f"{score_cfg.known_smiles_column!r} (columns: {', '.join(columns[:10])})")


@functools.lru_cache(maxsize=2)
def known_index(path: str, smiles_column: str = "SMILES", cache_dir: str | None = None
                ) -> FingerprintIndex:
    """The fingerprint index of a molecule file (built once per process, its fingerprints
    cached on disk in ``cache_dir``)."""
    return FingerprintIndex.from_file(path, smiles_column, cache_dir)


def add_nearest(df: pd.DataFrame, index: FingerprintIndex, workers: int | None = None
                ) -> pd.DataFrame:
    """``nearest_known`` (the most similar molecule of ``index``, e.g. the training data)
    and ``nearest_similarity`` (its Morgan Tanimoto, 1.0 = the same fingerprint) for each
    valid row; empty / NaN for the others."""
    df = df.reset_index(drop=True)
    valid = df["valid"].to_numpy(bool)
    rows, sims = index.nearest(df.loc[valid, "smiles"].tolist(), workers=workers)
    known = np.full(len(df), "", dtype=object)
    known[np.flatnonzero(valid)] = [index.smiles[r] if r >= 0 else "" for r in rows]
    sim = np.full(len(df), np.nan)
    sim[valid] = sims
    return df.assign(nearest_known=known, nearest_similarity=sim)


def mark_unique(df: pd.DataFrame) -> pd.DataFrame:
    """Recompute ``unique`` (and its filter) over a whole table, e.g. after joining shards."""
    df = df.reset_index(drop=True)
    df["unique"] = df["valid"].to_numpy(bool) & (~df["smiles"].duplicated()).to_numpy()
    if "pass_uniqueness" in df:
        df["pass_uniqueness"] = df["unique"]
    pass_cols = [c for c in df.columns if c.startswith("pass_") and c != "pass_all"]
    if "pass_all" in df:
        df["pass_all"] = df["valid"] & df[pass_cols].all(axis=1)
    return df


def max_similarity(smiles: Sequence[str], reference: Sequence[str]) -> list[float]:
    """Highest Tanimoto similarity of each molecule to any reference molecule."""
    ref_fps = [chem.fingerprint(m) for m in map(chem.to_mol, reference) if m is not None]
    out = []
    for s in smiles:
        m = chem.to_mol(s)
        if m is None or not ref_fps:
            out.append(0.0)
            continue
        out.append(max(DataStructs.BulkTanimotoSimilarity(chem.fingerprint(m), ref_fps)))
    return out


def rank(df: pd.DataFrame, by: str = "score", require_pass: bool = False) -> pd.DataFrame:
    """Valid unique molecules sorted by ``by`` (descending; for ``score``, ties broken by
    ``score_margin``), optionally only those passing every filter, with ``rank`` = 1, 2, ...
    The rows keep their index in ``df``."""
    missing = [c for c in ("valid", "unique", by) if c not in df]
    if missing:
        raise DataError(f"rank needs the columns annotate adds; missing {', '.join(missing)} "
                        "(run molvae.annotate on the table first)")
    keep = df["valid"] & df["unique"]
    if require_pass and "pass_all" in df:
        keep &= df["pass_all"]
    keys = [by, "score_margin"] if by == "score" and "score_margin" in df else [by]
    out = df[keep].sort_values(keys, ascending=False, kind="stable")
    return out.assign(rank=np.arange(1, len(out) + 1))


def top_set(ranked: pd.DataFrame, n: int, max_similarity: float = 0.55,
            include_known: bool = False) -> pd.DataFrame:
    """The best ``n`` of a ``rank``ed table taken one per chemotype: going down the
    ranking, a molecule joins unless it is more than ``max_similarity`` (Morgan Tanimoto)
    similar to one already in, or (unless ``include_known``) it is a training molecule.
    ``attrs``: how many above the last member were passed over as known and as too
    similar."""
    novel = ranked["novel"].to_numpy(bool) if "novel" in ranked else np.ones(len(ranked), bool)
    chosen: list[int] = []
    fps: list = []
    known = similar = 0
    for pos, smiles in enumerate(ranked["smiles"]):
        if len(chosen) >= n:
            break
        if not (include_known or novel[pos]):
            known += 1
            continue
        fp = chem.fingerprint(chem.to_mol(smiles))
        if fps and max(DataStructs.BulkTanimotoSimilarity(fp, fps)) > max_similarity:
            similar += 1
            continue
        chosen.append(pos)
        fps.append(fp)
    out = key_columns_first(ranked.iloc[chosen])
    out.attrs.update(known_skipped=known, similar_skipped=similar, max_similarity=max_similarity)
    return out


def with_ranks(df: pd.DataFrame, ranked: pd.DataFrame, top: pd.DataFrame | None = None
               ) -> pd.DataFrame:
    """``df`` with the ``rank`` of its ranked rows (empty for the others: invalid,
    duplicate) and ``top`` (in the top set), ranked rows first in rank order."""
    out = df.assign(rank=pd.Series(ranked["rank"], dtype="Int64").reindex(df.index))
    if top is not None:
        out["top"] = out.index.isin(top.index)
    return key_columns_first(out.sort_values("rank", kind="stable", na_position="last"))


# what a reviewer reads first, in this order
KEY_COLUMNS = ("rank", "smiles", "score", "novel", "nearest_known", "nearest_similarity",
               "pass_all", "reasons", "top")


def key_columns_first(df: pd.DataFrame) -> pd.DataFrame:
    first = [c for c in KEY_COLUMNS if c in df.columns]
    return df[first + [c for c in df.columns if c not in first]]
