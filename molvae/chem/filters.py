"""Medicinal-chemistry filters (the FILTERS registry) and desirability scores."""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Iterable, Sequence

import numpy as np
from rdkit import Chem, DataStructs, rdBase
from rdkit.Chem import Crippen, Descriptors, Lipinski, rdMolDescriptors
from rdkit.Chem.FilterCatalog import FilterCatalog, FilterCatalogParams

from ..config import DATA_DIR
from ..errors import ScoringError


@functools.cache
def _catalog(name: str) -> FilterCatalog:
    entries = {
        "pains": FilterCatalogParams.FilterCatalogs.PAINS,
        "brenk": FilterCatalogParams.FilterCatalogs.BRENK,
        "nih": FilterCatalogParams.FilterCatalogs.NIH,
        "zinc": FilterCatalogParams.FilterCatalogs.ZINC,
    }
    params = FilterCatalogParams()
    params.AddCatalog(entries[name])
    return FilterCatalog(params)


@functools.cache
def _moses_smarts() -> tuple[list[Chem.Mol], list[str], np.ndarray]:
    """MOSES medicinal-chemistry SMARTS (mcf.csv + wehi_pains.csv from molsets 0.3.1, MIT),
    their rule names (MCF1.., PAINS regId), and each query's pattern fingerprint (packed
    bits) for screening."""
    import csv

    rules = []
    with open(DATA_DIR / "moses_mcf.csv", newline="") as fh:
        rules += [(row["smarts"], row["names"]) for row in csv.DictReader(fh)]
    with open(DATA_DIR / "moses_wehi_pains.csv", newline="") as fh:
        for row in csv.reader(fh):
            if row:
                name = row[1].strip().removeprefix("<regId=").removesuffix(">") if len(row) > 1 else ""
                rules.append((row[0].strip(), f"PAINS:{name}" if name else "PAINS"))
    with rdBase.BlockLogs():
        parsed = [(m, name) for m, name in ((Chem.MolFromSmarts(p), n) for p, n in rules)
                  if m is not None]
    mols = [m for m, _ in parsed]
    return mols, [n for _, n in parsed], np.stack([_pattern_bits(m) for m in mols])


def _pattern_bits(mol: Chem.Mol) -> np.ndarray:
    """RDKit's pattern fingerprint, made for substructure screening: a query can only
    match a molecule whose fingerprint has every bit the query's has."""
    fp = Chem.PatternFingerprint(mol, fpSize=2048)
    return np.frombuffer(DataStructs.BitVectToBinaryText(fp), dtype=np.uint8)


MOSES_ALLOWED_ATOMS = frozenset({"C", "N", "S", "O", "F", "Cl", "Br", "H"})


def moses_alerts(mol: Chem.Mol, first_only: bool = False) -> list[str]:
    """Names of the MOSES filter rules a molecule breaks (Polykovskiy et al. 2020; same
    rules as ``moses.metrics.mol_passes_filters``): ``ring>=8``, ``charge``, ``atom:X``,
    then the MCF and PAINS SMARTS by name (``MCF7``, ``PAINS:ene_rhod_A(235)``). Empty =
    passes. The ~500 SMARTS are screened by pattern fingerprint first (~95% skipped, same
    result, ~4x faster); ``first_only`` stops at the first broken rule."""
    alerts = []
    largest = max((len(r) for r in mol.GetRingInfo().AtomRings()), default=0)
    if largest >= 8:
        alerts.append("ring>=8")
    if any(a.GetFormalCharge() != 0 for a in mol.GetAtoms()):
        alerts.append("charge")
    alerts += sorted({f"atom:{a.GetSymbol()}" for a in mol.GetAtoms()
                      if a.GetSymbol() not in MOSES_ALLOWED_ATOMS})
    if alerts and first_only:
        return alerts[:1]
    h_mol = Chem.AddHs(mol)
    patterns, names, bits = _moses_smarts()
    for i in np.flatnonzero(~(bits & ~_pattern_bits(h_mol)).any(1)):
        if h_mol.HasSubstructMatch(patterns[i]):
            alerts.append(names[i])
            if first_only:
                break
    return alerts


def passes_moses(mol: Chem.Mol) -> bool:
    """The MOSES filter: no rule of ``moses_alerts`` broken."""
    return not moses_alerts(mol, first_only=True)


def passes_lipinski(mol: Chem.Mol) -> bool:
    """Rule of five with at most one violation."""
    return _lipinski(Descriptors.MolWt(mol), Crippen.MolLogP(mol), Lipinski.NumHDonors(mol),
                     Lipinski.NumHAcceptors(mol))


def _lipinski(mw: float, logp: float, hbd: float, hba: float) -> bool:
    return sum([mw > 500, logp > 5, hbd > 5, hba > 10]) <= 1


def passes_veber(mol: Chem.Mol) -> bool:
    """Veber et al. 2002: <= 10 rotatable bonds and TPSA <= 140."""
    return (
        rdMolDescriptors.CalcNumRotatableBonds(mol) <= 10
        and rdMolDescriptors.CalcTPSA(mol) <= 140
    )


FILTERS: dict[str, Callable[[Chem.Mol], bool]] = {
    "lipinski": passes_lipinski,
    "veber": passes_veber,
    "pains": lambda m: not _catalog("pains").HasMatch(m),
    "brenk": lambda m: not _catalog("brenk").HasMatch(m),
    "nih": lambda m: not _catalog("nih").HasMatch(m),
    "zinc": lambda m: not _catalog("zinc").HasMatch(m),
    "moses": passes_moses,
}
# Filters that need context beyond one molecule (handled in score_smiles / the tables).
CONTEXT_FILTERS = ("windows", "novelty", "uniqueness", "reference")


def check_filters(names: Iterable[str]) -> list[str]:
    names = list(names)
    unknown = [n for n in names if n not in FILTERS and n not in CONTEXT_FILTERS]
    if unknown:
        known = ", ".join([*FILTERS, *CONTEXT_FILTERS])
        raise ScoringError(f"unknown filter(s) {', '.join(unknown)}; choose from {known}")
    return names


# --------------------------------------------------------------------------- desirability


def desirability(value: float, kind: str, low: float, high: float) -> float:
    """Derringer-style desirability in [0, 1].

    maximize: 0 below ``low``, 1 above ``high``; minimize: mirrored; window: 1 inside
    [low, high], falling linearly to 0 one window-width outside it.
    """
    if value is None or not math.isfinite(value):
        return 0.0
    width = high - low
    if kind == "maximize":
        return float(min(max((value - low) / width, 0.0), 1.0))
    if kind == "minimize":
        return float(min(max((high - value) / width, 0.0), 1.0))
    if low <= value <= high:
        return 1.0
    dist = low - value if value < low else value - high
    return float(max(1.0 - dist / width, 0.0))


def composite_score(props: dict[str, float], terms: Sequence) -> float:
    """Weighted geometric mean of desirabilities (0 if any term is 0)."""
    if not terms:
        return 0.0
    total_w = sum(t.weight for t in terms)
    log_sum = 0.0
    for t in terms:
        d = desirability(props.get(t.property, float("nan")), t.kind, t.low, t.high)
        if d <= 0:
            return 0.0
        log_sum += t.weight * math.log(d)
    return float(math.exp(log_sum / total_w))
