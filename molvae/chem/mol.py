"""Molecules: parsing, canonical SMILES, standardization, fingerprints, similarity, scaffolds.

Error contract: single-item functions return ``X | None`` for "not a molecule".
"""

from __future__ import annotations

import functools
from collections.abc import Iterable, Sequence

import numpy as np
from rdkit import Chem, DataStructs, rdBase
from rdkit.Chem.MolStandardize import rdMolStandardize
from rdkit.Chem.Scaffolds import MurckoScaffold


def to_mol(smiles: str | None) -> Chem.Mol | None:
    """Parse SMILES into a sanitized Mol, or None for anything that is not a molecule."""
    if not smiles or not isinstance(smiles, str):
        return None
    with rdBase.BlockLogs():
        mol = Chem.MolFromSmiles(smiles)
    if mol is None or mol.GetNumAtoms() == 0:
        return None
    return mol


def canonical_smiles(smiles: str | None, standardize: bool = False) -> str | None:
    """RDKit canonical (isomeric) SMILES, optionally standardized; None if not a molecule."""
    mol = to_mol(smiles)
    if mol is None:
        return None
    if standardize:
        mol = standardize_mol(mol)
        if mol is None:
            return None
    out = Chem.MolToSmiles(mol)
    return out or None


@functools.cache
def _standardizers():
    return rdMolStandardize.LargestFragmentChooser(), rdMolStandardize.Uncharger()


def standardize_mol(mol: Chem.Mol) -> Chem.Mol | None:
    """Keep the largest fragment and neutralize charges (RDKit MolStandardize)."""
    chooser, uncharger = _standardizers()
    try:
        with rdBase.BlockLogs():
            mol = uncharger.uncharge(chooser.choose(mol))
            Chem.SanitizeMol(mol)
    except Exception:  # RDKit raises assorted C++ errors on exotic inputs
        return None
    return mol if mol.GetNumAtoms() else None


def fingerprint(mol: Chem.Mol, radius: int = 2, n_bits: int = 2048):
    """Morgan (ECFP4 by default) bit vector."""
    return _morgan(radius, n_bits).GetFingerprint(mol)


@functools.cache
def _morgan(radius: int, n_bits: int):
    from rdkit.Chem import rdFingerprintGenerator

    return rdFingerprintGenerator.GetMorganGenerator(radius=radius, fpSize=n_bits)


def tanimoto(a: str, b: str) -> float | None:
    """Tanimoto similarity of two molecules' Morgan fingerprints; None if either is invalid."""
    ma, mb = to_mol(a), to_mol(b)
    if ma is None or mb is None:
        return None
    return DataStructs.TanimotoSimilarity(fingerprint(ma), fingerprint(mb))


def bulk_tanimoto(query: str, others: Sequence[str]) -> list[float | None]:
    """Similarity of ``query`` to each of ``others`` (None for invalid entries)."""
    mq = to_mol(query)
    if mq is None:
        return [None] * len(others)
    fq = fingerprint(mq)
    out: list[float | None] = []
    for s in others:
        m = to_mol(s)
        out.append(None if m is None else DataStructs.TanimotoSimilarity(fq, fingerprint(m)))
    return out


def scaffold(mol: Chem.Mol) -> str:
    """Bemis-Murcko scaffold SMILES ('' for acyclic molecules)."""
    try:
        return MurckoScaffold.MurckoScaffoldSmiles(mol=mol)
    except Exception:
        return ""


def fingerprints(smiles: Iterable[str], radius: int = 2, n_bits: int = 2048) -> np.ndarray:
    """Morgan fingerprints as a (N, n_bits) uint8 array (invalid molecules: all zeros)."""
    smiles = list(smiles)
    out = np.zeros((len(smiles), n_bits), dtype=np.uint8)
    gen = _morgan(radius, n_bits)
    for i, s in enumerate(smiles):
        m = to_mol(s)
        if m is not None:
            out[i] = gen.GetFingerprintAsNumPy(m)
    return out
