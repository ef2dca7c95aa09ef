"""Medicinal-chemistry filters (the FILTERS registry) and desirability scores."""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Iterable, Sequence

from rdkit import Chem
from rdkit.Chem import Crippen, Descriptors, Lipinski, rdMolDescriptors

from ..errors import ScoringError
from .alerts import CATALOGS, catalog_alerts, moses_rules
from .screen import ScreenKey

MOSES_ALLOWED_ATOMS = frozenset({"C", "N", "S", "O", "F", "Cl", "Br", "H"})
# One substructure test each instead of a Python loop over the atoms (~0.2 ms a molecule):
# an atom with a formal charge; an atom outside MOSES_ALLOWED_ATOMS (by atomic number,
# aromatic or not, any isotope; the dummy atom * included).
_CHARGED = Chem.MolFromSmarts("[!+0]")
_NOT_ALLOWED = Chem.MolFromSmarts("[" + "&".join(
    f"!#{Chem.GetPeriodicTable().GetAtomicNumber(s)}" for s in sorted(MOSES_ALLOWED_ATOMS)) + "]")


def moses_alerts(mol: Chem.Mol, first_only: bool = False, *,
                 key: ScreenKey | None = None) -> list[str]:
    """Names of the MOSES filter rules a molecule breaks (Polykovskiy et al. 2020; same
    rules as ``moses.metrics.mol_passes_filters``): ``ring>=8``, ``charge``, ``atom:X``,
    then the MCF and PAINS SMARTS by name (``MCF7``, ``PAINS:ene_rhod_A(235)``). Empty =
    passes. The SMARTS match the molecule with explicit Hs, made only when a rule passes
    the screen by the H-less molecule (its ``ScreenKey``, when the caller has it);
    ``first_only`` stops at the first broken rule."""
    alerts = []
    largest = max((len(r) for r in mol.GetRingInfo().AtomRings()), default=0)
    if largest >= 8:
        alerts.append("ring>=8")
    if mol.HasSubstructMatch(_CHARGED):
        alerts.append("charge")
    if mol.HasSubstructMatch(_NOT_ALLOWED):
        alerts += sorted({f"atom:{a.GetSymbol()}" for a in mol.GetAtoms()
                          if a.GetSymbol() not in MOSES_ALLOWED_ATOMS})
    if alerts and first_only:
        return alerts[:1]
    return alerts + moses_rules().matches(mol, key, first_only, target=lambda: Chem.AddHs(mol))


def passes_moses(mol: Chem.Mol) -> bool:
    """The MOSES filter: no rule of ``moses_alerts`` broken."""
    return not moses_alerts(mol, first_only=True)


# Threshold filters as (label, property, upper limit): the rules FILTERS' functions and the
# scoring panel's reasons both apply. Lipinski allows one broken rule, Veber none.
THRESHOLD_RULES = {
    "lipinski": (("MW", "mw", 500), ("logP", "logp", 5), ("HBD", "hbd", 5), ("HBA", "hba", 10)),
    "veber": (("rotatable bonds", "rotatable_bonds", 10), ("TPSA", "tpsa", 140)),
}
RULES_ALLOWED_BROKEN = {"lipinski": 1, "veber": 0}


def broken_rules(name: str, values: dict[str, float]) -> list[tuple[str, float, float]]:
    """(label, value, limit) of each rule of threshold filter ``name`` that ``values``
    break (a missing or non-finite value counts as broken); empty when the filter passes."""
    broken = [(label, v, limit) for label, prop, limit in THRESHOLD_RULES[name]
              if not (v := values.get(prop, math.nan)) <= limit]
    return broken if len(broken) > RULES_ALLOWED_BROKEN[name] else []


def passes_lipinski(mol: Chem.Mol) -> bool:
    """Rule of five with at most one violation."""
    return not broken_rules("lipinski", {
        "mw": Descriptors.MolWt(mol), "logp": Crippen.MolLogP(mol),
        "hbd": Lipinski.NumHDonors(mol), "hba": Lipinski.NumHAcceptors(mol)})


def _passes_catalog(name: str, mol: Chem.Mol) -> bool:
    return not catalog_alerts(name).matches(mol, first_only=True)


def passes_veber(mol: Chem.Mol) -> bool:
    """Veber et al. 2002: <= 10 rotatable bonds and TPSA <= 140."""
    return not broken_rules("veber", {
        "rotatable_bonds": rdMolDescriptors.CalcNumRotatableBonds(mol),
        "tpsa": rdMolDescriptors.CalcTPSA(mol)})


FILTERS: dict[str, Callable[[Chem.Mol], bool]] = {
    "lipinski": passes_lipinski,
    "veber": passes_veber,
    **{name: functools.partial(_passes_catalog, name) for name in CATALOGS},
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


def desirability(value: float, kind: str, low: float | None = None, high: float | None = None,
                 mu: float | None = None, sigma: float | None = None) -> float:
    """Derringer-style desirability in [0, 1]; the kinds of ``config.DesirabilityTerm``.

    maximize: 0 below ``low``, 1 above ``high``; minimize: mirrored; window: 1 inside
    [low, high], falling linearly to 0 one window-width outside it; gaussian around ``mu``
    (min_gaussian 1 at or below it, max_gaussian 1 at or above); threshold min(x, high) /
    high; value: the value clipped to [0, 1].
    """
    if value is None or not math.isfinite(value):
        return 0.0
    if kind in ("gaussian", "min_gaussian", "max_gaussian"):
        if (kind == "min_gaussian" and value <= mu) or (kind == "max_gaussian" and value >= mu):
            return 1.0
        return float(math.exp(-0.5 * ((value - mu) / sigma) ** 2))
    if kind == "threshold":
        return float(min(max(value, 0.0), high) / high)
    if kind == "value":
        return float(min(max(value, 0.0), 1.0))
    width = high - low
    if kind == "maximize":
        return float(min(max((value - low) / width, 0.0), 1.0))
    if kind == "minimize":
        return float(min(max((high - value) / width, 0.0), 1.0))
    if low <= value <= high:
        return 1.0
    dist = low - value if value < low else value - high
    return float(max(1.0 - dist / width, 0.0))


def term_desirability(value: float, term) -> float:
    """``desirability`` with a ``config.DesirabilityTerm``'s settings."""
    return desirability(value, term.kind, term.low, term.high, term.mu, term.sigma)


def desirability_margin(value: float, kind: str, low: float | None, high: float | None) -> float:
    """Where ``value`` sits on the desirability's ramp, unclipped: maximize/minimize 0 at
    the worst end, 1 at the best, beyond 1 past it; window 1 at the centre, 0 at the edges.
    Breaks ties among molecules whose desirability saturates at 1. Other kinds: nan."""
    if value is None or not math.isfinite(value) or kind not in ("maximize", "minimize", "window"):
        return -math.inf if kind in ("maximize", "minimize", "window") else math.nan
    width = high - low
    if kind == "maximize":
        return (value - low) / width
    if kind == "minimize":
        return (high - value) / width
    return 1.0 - abs(value - (low + high) / 2) / (width / 2)


def score_margin(props: dict[str, float], terms: Sequence) -> float:
    """Weighted mean of the terms' ``desirability_margin`` (their desirability for kinds
    without a ramp): the tie-break of ``score``."""
    if not terms:
        return 0.0
    total_w = sum(t.weight for t in terms)
    total = 0.0
    for t in terms:
        v = props.get(t.name, math.nan)
        m = desirability_margin(v, t.kind, t.low, t.high)
        total += t.weight * (term_desirability(v, t) if math.isnan(m) else m)
    return float(total / total_w)


def composite_score(props: dict[str, float], terms: Sequence, combine: str = "geometric") -> float:
    """Weighted geometric (0 if any term is 0) or arithmetic mean of desirabilities."""
    return combine_desirabilities([term_desirability(props.get(t.name, math.nan), t) for t in terms],
                                  [t.weight for t in terms], combine)


def combine_desirabilities(values: Sequence[float], weights: Sequence[float],
                           combine: str = "geometric") -> float:
    """Weighted geometric (0 if any value is 0) or arithmetic mean; 0 for no values."""
    total_w = sum(weights)
    if not values:
        return 0.0
    if combine == "arithmetic":
        return float(sum(w * d for d, w in zip(values, weights, strict=True)) / total_w)
    log_sum = 0.0
    for d, w in zip(values, weights, strict=True):
        if d <= 0:
            return 0.0
        log_sum += w * math.log(d)
    return float(math.exp(log_sum / total_w))
