"""Batch scoring: one row per molecule with every property and filter, over all cores.

Batch functions never raise on one bad molecule: they mark it (``valid = False``) and go on.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Sequence

from rdkit import Chem
from rdkit.Chem import QED

from ..parallel import map_chunks
from .filters import FILTERS, _lipinski, check_filters
from .mol import to_mol
from .properties import PROPERTIES, _plogp_from, check_property, long_ring_penalty


def score_one(
    smiles: str | None,
    filters: Sequence[str] = tuple(FILTERS),
    windows: dict[str, tuple[float, float]] | None = None,
    property_names: Sequence[str] | None = None,
) -> dict:
    """One row: canonical SMILES, validity, every property and every per-molecule filter.

    Never raises on a bad molecule: it returns ``valid = False`` with empty fields.
    """
    names = list(property_names or PROPERTIES)
    per_mol = [f for f in filters if f in FILTERS]
    row: dict = {"smiles": "", "valid": False}
    mol = to_mol(smiles)
    if mol is None:
        row.update({n: float("nan") for n in names})
        row.update({f"pass_{f}": False for f in per_mol})
        if windows is not None and "windows" in filters:
            row["pass_windows"] = False
        return row
    row["smiles"] = Chem.MolToSmiles(mol)
    row["valid"] = True
    shared: dict[str, float] = {}
    if "qed" in names:  # QED computes MW and logP on its way: computed once, reused
        with contextlib.suppress(Exception):
            qp = QED.properties(mol)
            shared = {"qed": QED.qed(mol, qedProperties=qp), "mw": qp.MW, "logp": qp.ALOGP}
    for n in names:
        try:
            if n in shared:
                row[n] = float(shared[n])
            elif n == "plogp" and "logp" in row and "sa" in row:  # reuse: SA is the slow part
                row[n] = _plogp_from(row["logp"], row["sa"], long_ring_penalty(mol))
            else:
                row[n] = float(PROPERTIES[n](mol))
        except Exception:  # one odd molecule must not stop a batch
            row[n] = float("nan")
    lipinski_inputs = [row.get(k, math.nan) for k in ("mw", "logp", "hbd", "hba")]
    for f in per_mol:
        try:
            if f == "lipinski" and all(map(math.isfinite, lipinski_inputs)):
                row["pass_lipinski"] = _lipinski(*lipinski_inputs)
            else:
                row[f"pass_{f}"] = bool(FILTERS[f](mol))
        except Exception:
            row[f"pass_{f}"] = False
    if windows is not None and "windows" in filters:
        ok = True
        for prop, (lo, hi) in windows.items():
            v = row.get(prop)
            if v is None:
                v = float(PROPERTIES[prop](mol))
            ok = ok and (lo <= v <= hi)
        row["pass_windows"] = bool(ok)
    return row


def _score_chunk(chunk: list[str | None], filters: tuple[str, ...],
                 windows: dict[str, tuple[float, float]] | None,
                 names: Sequence[str] | None) -> list[dict]:
    return [score_one(s, filters, windows, names) for s in chunk]


def score_smiles(
    smiles: Sequence[str | None],
    filters: Sequence[str] = tuple(FILTERS),
    windows: dict[str, tuple[float, float]] | None = None,
    property_names: Sequence[str] | None = None,
    workers: int | None = None,
    chunk_size: int = 250,
    progress: Callable[[int], None] | None = None,
) -> list[dict]:
    """Score many molecules in parallel (SMILES in, rows out, input order kept)."""
    check_filters(filters)
    for name in property_names or ():
        check_property(name)
    for name in windows or {}:
        check_property(name)
    return map_chunks(_score_chunk, list(smiles), tuple(filters), windows, property_names,
                      chunk_size=chunk_size, workers=workers, progress=progress)
