"""Molecular properties: the PROPERTIES registry (name -> function of a Mol)."""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Iterable

from rdkit import Chem, rdBase
from rdkit.Chem import QED, Crippen, Descriptors, Lipinski, rdMolDescriptors

from ..errors import ScoringError
from .alerts import qed_alerts


@functools.cache
def _sascorer():
    from rdkit.Contrib.SA_Score import sascorer

    return sascorer


@functools.cache
def _np_model():
    import contextlib
    import io as _io

    from rdkit.Contrib.NP_Score import npscorer

    # readNPModel prints progress to stderr; library code stays silent.
    with rdBase.BlockLogs(), contextlib.redirect_stderr(_io.StringIO()), \
            contextlib.redirect_stdout(_io.StringIO()):
        return npscorer, npscorer.readNPModel()


@functools.cache
def _morgan_generator():
    from rdkit.Chem import rdFingerprintGenerator

    return rdFingerprintGenerator.GetMorganGenerator(radius=2, fpSize=2048)


def morgan_counts(mol: Chem.Mol) -> dict[int, int]:
    """Unfolded Morgan radius-2 feature counts: the fragments both SA and NP-likeness score
    (RDKit Contrib's sascorer and npscorer use this generator), computed once per molecule
    by the panel and handed to both."""
    return _morgan_generator().GetSparseCountFingerprint(mol).GetNonzeroElements()


def sa_score(mol: Chem.Mol, counts: dict[int, int] | None = None) -> float:
    """Synthetic accessibility, 1 (easy) .. 10 (hard): Ertl & Schuffenhauer 2009, RDKit
    Contrib's ``sascorer.calculateScore``, the same arithmetic in the same order; its
    chiral-centre count read atom by index instead of through Python's atom iterator.
    ``counts``: the molecule's ``morgan_counts`` when the caller has them."""
    sascorer = _sascorer()
    n_atoms = mol.GetNumAtoms()
    if not n_atoms:
        return float(sascorer.calculateScore(mol))  # its None: an error, as before
    if sascorer._fscores is None:
        sascorer.readFragmentScores()
    fscores = sascorer._fscores
    nze = morgan_counts(mol) if counts is None else counts
    score1, nf = 0.0, 0
    for bit, count in nze.items():  # fragment score
        nf += count
        score1 += fscores.get(bit, -4) * count
    score1 /= nf
    n_macrocycles = sum(1 for ring in mol.GetRingInfo().AtomRings() if len(ring) > 8)
    score2 = (0.0 - (n_atoms**1.005 - n_atoms) - math.log10(_chiral_centres(mol) + 1)
              - math.log10(rdMolDescriptors.CalcNumSpiroAtoms(mol) + 1)
              - math.log10(rdMolDescriptors.CalcNumBridgeheadAtoms(mol) + 1)
              - (math.log10(2) if n_macrocycles > 0 else 0.0))
    score3 = math.log(float(n_atoms) / len(nze)) * 0.5 if n_atoms > len(nze) else 0.0
    low, high = -4.0, 2.5
    sa = 11.0 - (score1 + score2 + score3 - low + 1) / (high - low) * 9.0
    if sa > 8.0:  # smooth the 10-end
        sa = 8.0 + math.log(sa + 1.0 - 9.0)
    return float(min(max(sa, 1.0), 10.0))


def _chiral_centres(mol: Chem.Mol) -> int:
    """``len(Chem.FindMolChiralCenters(mol, includeUnassigned=True))``: its legacy reading
    (RDKit's default) by atom index; the molecule's stereo flags set as it sets them."""
    if not Chem.GetUseLegacyStereoPerception():
        return len(Chem.FindMolChiralCenters(mol, includeUnassigned=True))
    atoms = [mol.GetAtomWithIdx(i) for i in range(mol.GetNumAtoms())]
    for a in atoms:
        a.ClearProp("_ChiralityPossible")
    Chem.AssignStereochemistry(mol, force=True, flagPossibleStereoCenters=True, cleanIt=True)
    return sum(1 for a in atoms if a.HasProp("_CIPCode") or a.HasProp("_ChiralityPossible"))


def np_likeness(mol: Chem.Mol, counts: dict[int, int] | None = None) -> float:
    """Natural-product likeness, Ertl et al. 2008: RDKit Contrib's ``npscorer.scoreMol``,
    the same arithmetic in the same order, without the fingerprint generator and the
    namedtuple class it builds for every molecule (~0.15 ms of its ~0.26 ms). ``counts``:
    the molecule's ``morgan_counts`` when the caller has them."""
    _, model = _np_model()
    score = 0.0
    for bit in morgan_counts(mol) if counts is None else counts:
        if bit in model:
            score += model[bit]
    score /= float(mol.GetNumAtoms())
    if score > 4:  # npscorer: "preventing score explosion for exotic molecules"
        score = 4.0 + math.log10(score - 4.0 + 1.0)
    elif score < -4:
        score = -4.0 - math.log10(-4.0 - score + 1.0)
    return float(score)


def long_ring_penalty(mol: Chem.Mol) -> int:
    """Size of the largest ring beyond 6 atoms (0 when no ring is larger than 6)."""
    sizes = [len(r) for r in mol.GetRingInfo().AtomRings()]
    largest = max(sizes, default=0)
    return max(largest - 6, 0)


# Penalized logP as in JT-VAE (Jin et al. 2018, github.com/wengong-jin/icml18-jtnn,
# bo/run_bo.py): each term standardized with its mean and deviation over ZINC-250k.
PLOGP_LOGP_MEAN, PLOGP_LOGP_STD = 2.4570953396190123, 1.434324401111988
PLOGP_SA_MEAN, PLOGP_SA_STD = -3.0525811293166134, 0.8335207024513095
PLOGP_CYCLE_MEAN, PLOGP_CYCLE_STD = -0.0485696876403053, 0.2860212110245455


def penalized_logp(mol: Chem.Mol) -> float:
    """JT-VAE penalized logP: logP - SA - long-ring penalty, each ZINC-250k standardized."""
    return _plogp_from(Crippen.MolLogP(mol), sa_score(mol), long_ring_penalty(mol))


def _plogp_from(logp: float, sa: float, ring_penalty: int) -> float:
    return float((logp - PLOGP_LOGP_MEAN) / PLOGP_LOGP_STD
                 + (-sa - PLOGP_SA_MEAN) / PLOGP_SA_STD
                 + (-ring_penalty - PLOGP_CYCLE_MEAN) / PLOGP_CYCLE_STD)


def formal_charge(mol: Chem.Mol) -> int:
    return int(Chem.GetFormalCharge(mol))


def rotatable_bonds(mol: Chem.Mol) -> int:
    """Rotatable bonds, RDKit's strict definition (the one QED uses)."""
    return int(rdMolDescriptors.CalcNumRotatableBonds(mol, _STRICT))


_STRICT = rdMolDescriptors.NumRotatableBondsOptions.Strict


def qed_properties(mol: Chem.Mol, key=None, known: dict[str, float] | None = None,
                   memo: dict | None = None) -> QED.QEDproperties:
    """``rdkit.Chem.QED.properties`` with the same values, faster: the 116 structural
    alerts are screened (``key``: the molecule's ``ScreenKey``, when the caller has it),
    and MW, logP, HBD, TPSA and rotatable bonds come from ``known`` (values the caller
    computed on the same molecule) when given; ``memo``: the molecule's alert
    answers shared with other alert sets (``AlertSet.matches``)."""
    if mol.GetNumAtoms() != mol.GetNumHeavyAtoms():  # QED works on the H-less graph
        mol, key, known, memo = Chem.RemoveHs(mol), None, None, None
    known = known or {}

    def get(name, fn):
        v = known.get(name)
        return fn(mol) if v is None else v

    return QED.QEDproperties(
        MW=get("mw", Descriptors.MolWt),
        ALOGP=get("logp", Crippen.MolLogP),
        HBA=sum(len(mol.GetSubstructMatches(p)) for p in QED.Acceptors
                if mol.HasSubstructMatch(p)),
        HBD=get("hbd", rdMolDescriptors.CalcNumHBD),
        PSA=get("tpsa", rdMolDescriptors.CalcTPSA),
        ROTB=get("rotatable_bonds", rotatable_bonds),
        AROM=len(Chem.GetSSSR(Chem.DeleteSubstructs(Chem.Mol(mol), QED.AliphaticRings))),
        ALERTS=qed_alerts().count(mol, key, memo),
    )


def qed(mol: Chem.Mol) -> float:
    """Quantitative estimate of drug-likeness (Bickerton et al. 2012), RDKit's mean weights."""
    return float(QED.qed(mol, qedProperties=qed_properties(mol)))


PROPERTIES: dict[str, Callable[[Chem.Mol], float]] = {
    "mw": Descriptors.MolWt,
    "logp": Crippen.MolLogP,
    "qed": qed,
    "sa": sa_score,
    "tpsa": rdMolDescriptors.CalcTPSA,
    "hbd": rdMolDescriptors.CalcNumHBD,
    "hba": Lipinski.NumHAcceptors,
    "rotatable_bonds": rotatable_bonds,
    "rings": rdMolDescriptors.CalcNumRings,
    "aromatic_rings": rdMolDescriptors.CalcNumAromaticRings,
    "heavy_atoms": lambda m: m.GetNumHeavyAtoms(),
    "fsp3": rdMolDescriptors.CalcFractionCSP3,
    "formal_charge": formal_charge,
    "plogp": penalized_logp,
    "np_score": np_likeness,
}


# axis labels with units, for plots
PROPERTY_LABELS = {
    "mw": "molecular weight (g/mol)", "logp": "Crippen logP", "tpsa": "TPSA (Å²)",
    "qed": "QED (0..1, higher = more drug-like)", "sa": "SA score (1 easy .. 10 hard to make)",
    "plogp": "penalized logP (JT-VAE, standardized)", "heavy_atoms": "heavy atoms",
    "np_score": "natural-product likeness (Ertl 2008)",
}


def check_property(name: str) -> str:
    if name not in PROPERTIES:
        if isinstance(name, str) and name.lower() in PROPERTIES:
            raise ScoringError(f"unknown property {name!r}: property names are lower case, "
                               f"{name.lower()!r}")
        raise ScoringError(f"unknown property {name!r}; choose from {', '.join(PROPERTIES)}")
    return name


def properties(mol: Chem.Mol, names: Iterable[str] | None = None) -> dict[str, float]:
    """Compute the named properties (all by default) of one molecule."""
    return {n: float(PROPERTIES[n](mol)) for n in (names or PROPERTIES)}
