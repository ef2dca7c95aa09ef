"""Candidate tables: annotate (properties, filters, uniqueness, novelty, score), ranking."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import pandas as pd

from . import chem
from .checkpoint import LoadedModel
from .config import ScoreConfig


def annotate(df: pd.DataFrame, score_cfg: ScoreConfig, lm: LoadedModel | None = None,
             workers: int | None = None, progress: Callable[[int], None] | None = None
             ) -> pd.DataFrame:
    """Add unique, novel (vs the model's training set), the configured properties (all by
    default), every filter (``pass_*``), ``pass_all``, ``reasons`` (why each failed filter
    failed) and the desirability ``score``. Input order kept."""
    names = score_cfg.properties
    if names is not None:
        names = list(dict.fromkeys([*names, *(t.property for t in score_cfg.desirability)]))
    rows = chem.score_smiles(df["smiles"].tolist(), score_cfg.filters, score_cfg.windows,
                             property_names=names, workers=workers or score_cfg.workers,
                             progress=progress, reasons=True)
    scored = pd.DataFrame(rows).drop(columns=["smiles", "valid"])
    out = pd.concat([df.reset_index(drop=True), scored], axis=1)
    valid = out["valid"].to_numpy(bool)
    first = ~out["smiles"].duplicated()
    out["unique"] = valid & first.to_numpy()
    novel = np.zeros(len(out), dtype=bool)
    if lm is not None and valid.any():
        novel[valid] = lm.is_novel(out.loc[valid, "smiles"].tolist())
    elif valid.any():
        novel[valid] = True
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
    out["score"] = [chem.composite_score(dict(zip(props, r, strict=True)), score_cfg.desirability)
                    if v else 0.0 for r, v in zip(out[props].to_numpy(), valid, strict=True)]
    return out


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
    from rdkit import DataStructs

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
    """Valid unique molecules sorted by ``by`` (descending), optionally only those passing
    every filter."""
    keep = df["valid"] & df["unique"]
    if require_pass and "pass_all" in df:
        keep &= df["pass_all"]
    return df[keep].sort_values(by, ascending=False, kind="stable").reset_index(drop=True)
