"""The property and filter panel computed the straightforward way, for checking and timing
``molvae.chem.score_one`` against it: each part by RDKit's own function on the parsed
molecule, nothing shared, no screening (RDKit's FilterCatalog, ``QED.qed``, every MOSES
SMARTS matched). Used by ``benchmarks/scoring.py`` and ``tests/test_chem.py``.
"""

from __future__ import annotations

import csv
import functools
import math

from rdkit import Chem, rdBase
from rdkit.Chem import QED, Crippen, Descriptors, Lipinski, rdMolDescriptors
from rdkit.Chem.FilterCatalog import FilterCatalog, FilterCatalogParams

from molvae.chem.properties import _np_model, _plogp_from, _sascorer, long_ring_penalty
from molvae.config import DATA_DIR


@functools.cache
def catalog(name: str) -> FilterCatalog:
    params = FilterCatalogParams()
    params.AddCatalog(getattr(FilterCatalogParams.FilterCatalogs, name.upper()))
    return FilterCatalog(params)


@functools.cache
def moses_smarts() -> list[Chem.Mol]:
    smarts = []
    with open(DATA_DIR / "moses_mcf.csv", newline="") as fh:
        smarts += [row["smarts"] for row in csv.DictReader(fh)]
    with open(DATA_DIR / "moses_wehi_pains.csv", newline="") as fh:
        smarts += [row[0].strip() for row in csv.reader(fh) if row]
    with rdBase.BlockLogs():
        return [q for q in map(Chem.MolFromSmarts, smarts) if q is not None]


def moses_passes(mol: Chem.Mol) -> bool:
    """``moses.metrics.utils.mol_passes_filters`` without its SMILES round trip."""
    if max((len(r) for r in mol.GetRingInfo().AtomRings()), default=0) >= 8:
        return False
    if any(a.GetFormalCharge() != 0 for a in mol.GetAtoms()):
        return False
    if any(a.GetSymbol() not in {"C", "N", "S", "O", "F", "Cl", "Br", "H"}
           for a in mol.GetAtoms()):
        return False
    h_mol = Chem.AddHs(mol)
    return not any(h_mol.HasSubstructMatch(q) for q in moses_smarts())


PROPERTIES = {
    "mw": Descriptors.MolWt,
    "logp": Crippen.MolLogP,
    "qed": QED.qed,
    "sa": lambda m: _sascorer().calculateScore(m),  # RDKit Contrib's own
    "tpsa": rdMolDescriptors.CalcTPSA,
    "hbd": Lipinski.NumHDonors,
    "hba": Lipinski.NumHAcceptors,
    "rotatable_bonds": rdMolDescriptors.CalcNumRotatableBonds,
    "rings": rdMolDescriptors.CalcNumRings,
    "aromatic_rings": rdMolDescriptors.CalcNumAromaticRings,
    "heavy_atoms": lambda m: m.GetNumHeavyAtoms(),
    "fsp3": rdMolDescriptors.CalcFractionCSP3,
    "formal_charge": lambda m: sum(a.GetFormalCharge() for a in m.GetAtoms()),
    "plogp": lambda m: _plogp_from(Crippen.MolLogP(m), _sascorer().calculateScore(m),
                                   long_ring_penalty(m)),
    "np_score": lambda m: _np_model()[0].scoreMol(m, _np_model()[1]),  # RDKit Contrib's own
}


def _lipinski(mol: Chem.Mol) -> bool:
    return sum([Descriptors.MolWt(mol) > 500, Crippen.MolLogP(mol) > 5,
                Lipinski.NumHDonors(mol) > 5, Lipinski.NumHAcceptors(mol) > 10]) <= 1


def _veber(mol: Chem.Mol) -> bool:
    return (rdMolDescriptors.CalcNumRotatableBonds(mol) <= 10
            and rdMolDescriptors.CalcTPSA(mol) <= 140)


FILTERS = {
    "lipinski": _lipinski,
    "veber": _veber,
    **{n: (lambda m, n=n: not catalog(n).HasMatch(m)) for n in ("pains", "brenk", "nih", "zinc")},
    "moses": moses_passes,
}


def reference_row(smiles: str, windows: dict[str, tuple[float, float]]) -> dict:
    """What ``score_one(smiles, [*FILTERS, "windows"], windows)`` must return, minus
    reasons."""
    with rdBase.BlockLogs():
        mol = Chem.MolFromSmiles(smiles) if smiles else None
    if mol is None or mol.GetNumAtoms() == 0:
        return {"smiles": "", "valid": False}
    row: dict = {"smiles": Chem.MolToSmiles(mol), "valid": True}
    for name, fn in PROPERTIES.items():
        try:
            row[name] = float(fn(mol))
        except Exception:
            row[name] = math.nan
    for name, fn in FILTERS.items():
        row[f"pass_{name}"] = bool(fn(mol))
    row["pass_windows"] = all(lo <= row[p] <= hi for p, (lo, hi) in windows.items())
    return row
