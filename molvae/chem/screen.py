"""Substructure screening: what a molecule offers a query, checked before any search.

Two necessary conditions for a query to match a molecule, each tested for a whole alert
set's queries at once (``AlertSet.candidates``):

1. pattern fingerprint: RDKit's pattern fingerprint of the molecule holds every bit of the
   query's (what that fingerprint is made for);
2. atom kinds (kind: element, aromatic or not, charge sign): a match maps the query's atoms
   to distinct atoms of the molecule, so for any set S of kinds the molecule has at least as
   many atoms of a kind in S as the query has atoms that can only match kinds in S. The sets
   tried are the query atoms' own options (``[Cl,Br,I]``, ``n``, ``[N;+]``), read from
   RDKit's description of each query atom; a query atom that could be a hydrogen, or any
   atom, needs nothing.

The fingerprint rules out ~95% of the queries; the atom kinds ~45% of what is left (most
of it queries whose atoms are alternatives, which give a pattern fingerprint no bits).
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass

import numpy as np
from rdkit import Chem, DataStructs

PATTERN_BITS = 2048
# an atom's kind: atomic number + 128 if aromatic + 256 x charge sign (0, 1: +, 2: -)
KINDS = 768


def pattern_bits(mol: Chem.Mol) -> np.ndarray:
    """RDKit's pattern fingerprint (made for substructure screening) in 64-bit words."""
    fp = Chem.PatternFingerprint(mol, fpSize=PATTERN_BITS)
    return np.frombuffer(DataStructs.BitVectToBinaryText(fp), dtype=np.uint64)


_SIGNS = (0, 256, 512)  # the kind's offset for a neutral, positive, negative atom


def _sign(charge: int) -> int:
    return _SIGNS[(charge > 0) + 2 * (charge < 0)]


def kind_counts(mol: Chem.Mol) -> np.ndarray:
    """The molecule's atoms counted by kind (``KINDS``)."""
    kinds = [a.GetAtomicNum() + 128 * a.GetIsAromatic() + _sign(a.GetFormalCharge())
             for a in mol.GetAtoms()]
    return np.bincount(kinds, minlength=KINDS)


@dataclass(frozen=True)
class ScreenKey:
    """What the screen reads of one molecule, made once and shared by the alert sets."""

    unset: np.ndarray  # the bits pattern_bits leaves unset, as a column of words
    kinds: np.ndarray  # the kinds present
    counts: np.ndarray  # how many atoms of each

    @classmethod
    def of(cls, mol: Chem.Mol) -> ScreenKey:
        counts = kind_counts(mol)
        kinds = np.flatnonzero(counts)
        return cls(~pattern_bits(mol)[:, None], kinds, counts[kinds])


def _element(number: int, aromatic: bool | None = None) -> np.ndarray:
    kinds = np.zeros(KINDS, bool)
    for flag in (False, True) if aromatic is None else (aromatic,):
        for sign in _SIGNS:
            kinds[number + 128 * flag + sign] = True
    return kinds


def _charge(value: int) -> np.ndarray:
    kinds = np.zeros(KINDS, bool)
    start = _sign(value)
    kinds[start:start + 256] = True
    return kinds


_TEST = re.compile(r"(Atom\w+) (-?\d+) = val")
_HYDROGEN = _element(1)


def atom_options(atom: Chem.Atom) -> np.ndarray | None:
    """The kinds a query atom can match (bool over ``KINDS``); None when it needs nothing:
    any kind, or maybe a hydrogen (a molecule's hydrogens are mostly implicit)."""
    return _described_options(atom.DescribeQuery())


@functools.cache  # the catalogs repeat a few hundred query atoms ~20,000 times
def _described_options(description: str) -> np.ndarray | None:
    options, _ = _options(description.splitlines(), 0)
    if options.all() or (options & _HYDROGEN).any():
        return None
    options.flags.writeable = False  # shared by every query atom with this description
    return options


def _options(lines: list[str], i: int) -> tuple[np.ndarray, int]:
    """Kinds the query (sub)tree at ``lines[i]`` can match, and the line after the tree:
    AND intersects, OR unites; an element (``AtomAtomicNum``, ``AtomType``: the number +
    1000 when aromatic) or a charge restricts; any other test (negated ones included)
    restricts nothing here."""
    depth = len(lines[i]) - len(lines[i].lstrip(" "))
    node, end = lines[i].strip(), i + 1
    children = []
    while end < len(lines) and len(lines[end]) - len(lines[end].lstrip(" ")) > depth:
        if node in ("AtomAnd", "AtomOr"):
            child, end = _options(lines, end)
            children.append(child)
        else:
            end += 1
    if node == "AtomAnd":
        return np.logical_and.reduce(children), end
    if node == "AtomOr":
        return np.logical_or.reduce(children), end
    m = _TEST.fullmatch(node)
    if m and m.group(1) == "AtomAtomicNum":
        return _element(int(m.group(2))), end
    if m and m.group(1) == "AtomType":
        value = int(m.group(2))
        return _element(value % 1000, value >= 1000), end
    if m and m.group(1) == "AtomFormalCharge":
        return _charge(int(m.group(2))), end
    return np.ones(KINDS, bool), end


def query_options(query: Chem.Mol) -> list[np.ndarray]:
    """Each query atom's ``atom_options``, those that need something."""
    return [o for o in map(atom_options, query.GetAtoms()) if o is not None]


@dataclass(frozen=True)
class KindScreen:
    """The atom-kind test for a set's queries: ``sets`` (columns) of kinds and, per query,
    how many atoms of each set a molecule needs."""

    sets: np.ndarray  # (columns, KINDS) int
    needs: np.ndarray  # (queries, columns) int

    @classmethod
    def build(cls, requirements: list[list[list[list[np.ndarray]]]]) -> KindScreen:
        """``requirements``: per query, conditions that must all hold, each met by any one of
        its alternatives: a list of query-atom options (the query itself is one condition
        with one alternative; its relaxed form a second; a bundle of relaxed alternatives,
        any of which may be the one that matches, a condition with several)."""
        columns: dict[bytes, int] = {}  # each distinct option set, once: a column
        sets: list[np.ndarray] = []
        for conditions in requirements:
            for alternatives in conditions:
                for atoms in alternatives:
                    for options in atoms:
                        if columns.setdefault(options.tobytes(), len(sets)) == len(sets):
                            sets.append(options)
        # within[o, c]: option set o lies inside column c (no kind of o outside c)
        member = np.array(sets, np.float32).reshape(len(sets), KINDS)
        within = member @ (1.0 - member).T == 0
        needs = np.zeros((len(requirements), len(sets)), np.int64)
        for q, conditions in enumerate(requirements):
            for alternatives in conditions:
                counts = [within[[columns[o.tobytes()] for o in atoms]].sum(0)
                          for atoms in alternatives]
                fewest = np.min(counts, axis=0) if counts else 0
                needs[q] = np.maximum(needs[q], fewest)
        used = needs.any(0)
        matrix = np.array(sets, np.int64).reshape(len(sets), KINDS)[used]
        return cls(matrix, needs[:, used])

    def meets(self, key: ScreenKey) -> np.ndarray:
        """Per query: whether the molecule has the atoms it needs."""
        return (self.needs <= self.sets[:, key.kinds] @ key.counts).all(1)
