"""Batch scoring: one row per molecule with every property and filter, over all cores.

Batch functions never raise on one bad molecule: they mark it (``valid = False``) and go on.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Callable, Sequence

from rdkit import Chem
from rdkit.Chem import QED

from ..parallel import map_chunks
from .alerts import CATALOGS, catalog_alerts
from .filters import FILTERS, THRESHOLD_RULES, broken_rules, check_filters, moses_alerts
from .mol import to_mol
from .properties import (
    PROPERTIES,
    _plogp_from,
    check_property,
    long_ring_penalty,
    morgan_counts,
    qed_properties,
)
from .screen import ScreenKey


def score_one(
    smiles: str | None,
    filters: Sequence[str] = tuple(FILTERS),
    windows: dict[str, tuple[float, float]] | None = None,
    property_names: Sequence[str] | None = None,
    reasons: bool = False,
) -> dict:
    """One row: canonical SMILES, validity, the named properties (all by default) and the
    named per-molecule filters (``pass_<name>``); with ``reasons``, a ``reasons`` column
    naming why each failed filter failed (``brenk: Michael_acceptor_1; windows: mw 612 >
    600``; empty when all pass).

    The molecule is parsed once and what several parts need is computed once: its
    screen key (pattern fingerprint and atom kinds, screening PAINS, Brenk, NIH, MOSES and
    QED's alerts; the MOSES rules then match its explicit-H form, made only when a rule
    passes the screen), MW/logP/HBD/TPSA/rotatable bonds (QED, Lipinski, Veber, windows),
    SA (pLogP), one Morgan count fingerprint (SA, NP-likeness).
    Values equal the single functions' (``PROPERTIES``, ``FILTERS``).
    Never raises on a bad molecule: it returns ``valid = False`` with empty fields.
    """
    names = list(PROPERTIES if property_names is None else property_names)
    per_mol = [f for f in filters if f in FILTERS]
    use_windows = windows is not None and "windows" in filters
    row: dict = {"smiles": "", "valid": False}
    mol = to_mol(smiles)
    if mol is None:
        row.update({n: math.nan for n in names})
        row.update({f"pass_{f}": False for f in per_mol})
        if use_windows:
            row["pass_windows"] = False
        if reasons:
            row["reasons"] = "not a molecule"
        return row
    row["smiles"] = Chem.MolToSmiles(mol)
    row["valid"] = True
    panel = _Panel(mol)
    for n in names:
        row[n] = panel.prop(n)
    why: list[str] = []
    for f in per_mol:
        try:
            fired = panel.alerts(f, first_only=not reasons)
        except Exception:  # one odd molecule must not stop a batch
            fired = ["error"]
        row[f"pass_{f}"] = not fired
        if fired:
            why.append(f"{f}: {', '.join(fired)}")
    if use_windows:
        out = []
        for prop, (lo, hi) in windows.items():
            v = panel.prop(prop)
            if not lo <= v <= hi:
                out.append(f"{prop} {_num(v)} {'<' if v < lo else '>'} {_num(lo if v < lo else hi)}"
                           if math.isfinite(v) else f"{prop} unknown")
        row["pass_windows"] = not out
        if out:
            why.append(f"windows: {', '.join(out)}")
    if reasons:
        row["reasons"] = "; ".join(why)
    return row


def _num(v: float) -> str:
    return f"{v:.0f}" if abs(v) >= 100 or float(v).is_integer() else f"{v:.2f}"


class _Panel:
    """One molecule's properties and filter alerts, each intermediate computed once."""

    def __init__(self, mol: Chem.Mol):
        self.mol = mol
        self.values: dict[str, float] = {}
        self._key = None
        self._counts = None
        self.memo: dict[str, bool] = {}  # alert answers by query, shared across sets

    @property
    def key(self) -> ScreenKey:
        if self._key is None:
            self._key = ScreenKey.of(self.mol)
        return self._key

    def prop(self, name: str) -> float:
        if name not in self.values:
            try:
                self.values[name] = float(self._compute(name))
            except Exception:  # one odd molecule must not stop a batch
                self.values[name] = math.nan
        return self.values[name]

    def _compute(self, name: str) -> float:
        mol = self.mol
        if name == "qed":
            known = {k: self.prop(k) for k in ("mw", "logp", "hbd", "tpsa", "rotatable_bonds")}
            return QED.qed(mol, qedProperties=qed_properties(mol, self.key, known, self.memo))
        if name == "plogp":
            return _plogp_from(self.prop("logp"), self.prop("sa"), long_ring_penalty(mol))
        if name in ("sa", "np_score"):  # one Morgan count fingerprint for both
            if self._counts is None:
                self._counts = morgan_counts(mol)
            return PROPERTIES[name](mol, self._counts)
        return PROPERTIES[name](mol)

    def alerts(self, name: str, first_only: bool) -> list[str]:
        """Why filter ``name`` fails (alert names, rule values); empty when it passes."""
        if name in CATALOGS:
            return catalog_alerts(name).matches(self.mol, self.key, first_only, memo=self.memo)
        if name == "moses":
            return moses_alerts(self.mol, first_only, key=self.key)
        if name not in THRESHOLD_RULES:
            return [] if FILTERS[name](self.mol) else ["failed"]
        values = {prop: self.prop(prop) for _, prop, _ in THRESHOLD_RULES[name]}
        return [f"{label} {_num(v)} > {limit:g}" for label, v, limit in broken_rules(name, values)]


def _score_chunk(chunk: list[str | None], filters: tuple[str, ...],
                 windows: dict[str, tuple[float, float]] | None,
                 names: Sequence[str] | None, reasons: bool) -> list[dict]:
    return [score_one(s, filters, windows, names, reasons) for s in chunk]


PROBE = "CC(=O)Oc1ccccc1C(=O)O"  # aspirin: any molecule reaches every lazy table
_BUILDING = threading.Lock()
_PREPARED: set[tuple] = set()  # (filters, property names) whose tables this process holds


def prepare_panel(filters: Sequence[str] = tuple(FILTERS),
                  property_names: Sequence[str] | None = None) -> None:
    """Build in this process what the panel reads and parses once per process (the named
    filters' alert sets, QED's alerts, the SA and NP-likeness models: ~1.3 s), by scoring
    one molecule; one thread at a time, so threads that score at once (a Dask worker's)
    build it once. Worker processes forked afterwards share it instead of each building
    its own (``score_smiles`` prepares before it forks; a pipeline, while it samples)."""
    key = (tuple(filters), None if property_names is None else tuple(property_names))
    if key in _PREPARED:  # every score_smiles call asks: a set lookup once built
        return
    with _BUILDING:
        if key not in _PREPARED:
            score_one(PROBE, filters, None, property_names)
            _PREPARED.add(key)


def score_smiles(
    smiles: Sequence[str | None],
    filters: Sequence[str] = tuple(FILTERS),
    windows: dict[str, tuple[float, float]] | None = None,
    property_names: Sequence[str] | None = None,
    workers: int | None = None,
    chunk_size: int = 250,
    progress: Callable[[int], None] | None = None,
    reasons: bool = False,
) -> list[dict]:
    """``score_one`` over many molecules in parallel (SMILES in, rows out, input order kept)."""
    check_filters(filters)
    for name in property_names or ():
        check_property(name)
    for name in windows or {}:
        check_property(name)
    prepare_panel(filters, property_names)  # here, once, not in each worker or thread
    return map_chunks(_score_chunk, list(smiles), tuple(filters), windows, property_names,
                      reasons, chunk_size=chunk_size, workers=workers, progress=progress)
