"""Structural alerts: named substructure queries, screened before any search.

An ``AlertSet`` holds the queries of one rule family (RDKit's PAINS, Brenk and NIH
catalogs, the MOSES MCF + PAINS rules, QED's 116 unwanted groups) with what the screen
needs of each (``screen``: pattern fingerprint bits, atoms by kind): of the ~1,400 queries
a molecule is matched against, ~150 reach a substructure search. A query with recursive
SMARTS (``$(...)``, which RDKit evaluates over the whole molecule before matching, at up
to ~0.1 ms a query) is first tried in a relaxed, recursion-free form that every match of
the query also matches (``relax``): most candidates stop there. The answers are the same
as matching every query (``tests/test_chem.py``; ``benchmarks/scoring.py --check``).
"""

from __future__ import annotations

import csv
import functools
import re
from dataclasses import dataclass

import numpy as np
from rdkit import Chem, rdBase
from rdkit.Chem.FilterCatalog import FilterCatalog, FilterCatalogParams

from ..config import DATA_DIR
from .screen import PATTERN_BITS, KindScreen, ScreenKey, pattern_bits, query_options

CATALOGS = ("pains", "brenk", "nih", "zinc")
_UINT_MAX = 4294967295


@dataclass(frozen=True)
class AlertSet:
    """Named queries; ``unscreened`` entries (RDKit catalog entries whose query could not be
    read out) are matched by the catalog itself, without the screen."""

    names: tuple[str, ...]
    queries: tuple[Chem.Mol, ...]
    bits: np.ndarray  # (PATTERN_BITS // 64, len(queries)) uint64: words by query
    kinds: KindScreen  # the atoms each query needs
    unscreened: tuple = ()  # (name, FilterCatalogEntry)
    relaxed: tuple = ()  # per query: None (no recursion in it) or its relaxed query/bundle
    keys: tuple = ()  # per query: its SMARTS (and the form it matches), shared across sets

    def candidates(self, key: ScreenKey) -> np.ndarray:
        """Indices of the queries the screen cannot rule out for a molecule's ``key``."""
        # a bit of the query's the molecule lacks (reduced over words: ~2x faster than
        # over each query's row)
        missing = np.bitwise_or.reduce(self.bits & key.unset, axis=0) != 0
        return np.flatnonzero(self.kinds.meets(key) > missing)

    def matches(self, mol: Chem.Mol, key: ScreenKey | None = None,
                first_only: bool = False, target=None, memo: dict | None = None) -> list[str]:
        """Names of the queries ``mol`` matches, in the set's order (``key``: the
        molecule's ``ScreenKey``, passed when it is shared with other sets). ``target``:
        a callable giving the molecule to match instead, called only when some query passes
        the screen (the MOSES rules match the explicit-H form; ``heavy_screen``). ``memo``:
        one molecule's answers by query ``keys``, shared by the sets matched against it
        (Brenk and QED's alerts have 82 queries in common)."""
        found = []
        candidates = self.candidates(ScreenKey.of(mol) if key is None else key)
        if target is not None and (len(candidates) or self.unscreened):
            mol = target()
        for i in candidates:
            if memo is None:
                hit = self._match(mol, i)
            else:
                hit = memo.get(self.keys[i])
                if hit is None:
                    hit = memo[self.keys[i]] = self._match(mol, i)
            if hit:
                found.append(self.names[i])
                if first_only:
                    return found
        for name, entry in self.unscreened:
            if entry.HasFilterMatch(mol):
                found.append(name)
                if first_only:
                    break
        return found

    def _match(self, mol: Chem.Mol, i: int) -> bool:
        loose = self.relaxed[i] if self.relaxed else None
        if loose is not None and not mol.HasSubstructMatch(loose):
            return False
        return mol.HasSubstructMatch(self.queries[i])

    def count(self, mol: Chem.Mol, key: ScreenKey | None = None, memo: dict | None = None
              ) -> int:
        return len(self.matches(mol, key, memo=memo))


def inline_atoms(smarts: str) -> str:
    """The same query with each recursive SMARTS that is one atom's expression, ``$([X])``,
    written as ``X`` (``[$([#44]),$([se])]`` -> ``[#44,se]``): RDKit matches a recursive
    query by a whole substructure search per molecule, the plain atom test is ~free. Only
    where it means the same: not after ``!`` and X without a top-level ``,`` or ``;`` (SMARTS
    has no parentheses inside an atom, and ``&`` binds tighter than ``,`` and ``;``)."""
    out, i = [], 0
    while i < len(smarts):
        if smarts.startswith("$([", i) and (i == 0 or smarts[i - 1] != "!"):
            end = _closing(smarts, i + 2)
            body = smarts[i + 3:end]
            if end > 0 and smarts[end + 1:end + 2] == ")" and not _top_level(body) & {",", ";"}:
                out.append(inline_atoms(body))
                i = end + 2
                continue
        out.append(smarts[i])
        i += 1
    return "".join(out)


def relax(smarts: str) -> str:
    """A recursion-free SMARTS that matches wherever ``smarts`` does (and maybe more): each
    ``$(X)`` becomes X's first atom (the atom a recursive SMARTS tests), relaxed in turn, or
    ``*`` where that atom's expression holds ``,`` or ``;`` (it could not be spliced in
    without changing precedence); each ``!$(X)`` becomes ``*``. Spliced in with ``&``, which
    binds as tightly as the implicit AND it may replace (``[N$(a)]`` -> ``[N&a]``, not
    ``[Na]``)."""
    out, i = [], 0
    while i < len(smarts):
        negated = smarts.startswith("!$(", i)
        if negated or smarts.startswith("$(", i):
            start = i + 2 + negated
            end = _closing(smarts, start - 1, "()")
            if end < 0:
                raise ValueError(f"unbalanced parentheses in SMARTS {smarts!r}")
            out.append("&" + ("*" if negated else _first_atom(smarts[start:end])) + "&")
            i = end + 1
            continue
        out.append(smarts[i])
        i += 1
    text = re.sub("&+", "&", "".join(out))
    return re.sub(r"&(?=[\],;])", "", re.sub(r"(?<=[\[,;])&", "", text))


_SYMBOL = re.compile(r"Cl|Br|[BCNOSPFIbcnospaA*]")


def _first_atom(smarts: str) -> str:
    """The expression of a SMARTS string's first atom, relaxed (``*`` if not one AND)."""
    if smarts.startswith("["):
        inner = relax(smarts[1:_closing(smarts, 0)])
        return "*" if _top_level(inner) & {",", ";"} else inner
    m = _SYMBOL.match(smarts)
    return m.group(0) if m else "*"


def _closing(s: str, i: int, pair: str = "[]") -> int:
    """Index of the ``]`` closing the ``[`` at ``i`` (-1 if none); ``pair="()"``: the same
    for parentheses."""
    depth, step = 0, {pair[0]: 1, pair[1]: -1}
    for j in range(i, len(s)):
        depth += step.get(s[j], 0)
        if depth == 0:
            return j
    return -1


def _top_level(body: str) -> set[str]:
    """The characters of ``body`` outside its parentheses."""
    depth, chars = 0, set()
    for ch in body:
        depth += {"(": 1, ")": -1}.get(ch, 0)
        if depth == 0:
            chars.add(ch)
    return chars


def _make(rules: list[tuple[str, Chem.Mol]], unscreened: tuple = (),
          heavy_screen: bool = False) -> AlertSet:
    """``heavy_screen``: queries matched against the explicit-H molecule screened by the
    H-less molecule's bits: a query's bits taken without its hydrogen atoms (each remaining
    bit comes from atoms of one element, which a match maps to heavy atoms, present in the
    H-less molecule with the same bonds), so the costly H-form pattern bits are never made."""
    names = tuple(n for n, _ in rules)
    queries = tuple(_inlined(q) for _, q in rules)
    relaxed = tuple(map(_relaxed, queries))
    if heavy_screen:
        screened = [pattern_bits(_without_h(q)) for q in queries]
    else:  # a relaxed query's bits are the query's too (a bundle's are not: any one matches)
        screened = [pattern_bits(q) | pattern_bits(r) if isinstance(r, Chem.Mol) else pattern_bits(q)
                    for q, r in zip(queries, relaxed, strict=True)]
    bits = np.stack(screened, axis=1) if queries else np.zeros((PATTERN_BITS // 64, 0), np.uint64)
    form = "H:" if heavy_screen else ""  # the explicit-H form answers differently
    keys = tuple(form + Chem.MolToSmarts(q) for q in queries)
    kinds = KindScreen.build([_requirements(q, r) for q, r in zip(queries, relaxed, strict=True)])
    return AlertSet(names, queries, bits, kinds, unscreened, relaxed, keys)


def _requirements(query: Chem.Mol, relaxed) -> list:
    """What ``query`` needs (``KindScreen.build``): its own atoms, and its relaxed form's
    (which matches wherever the query does; a bundle: any one of its members)."""
    conditions = [[query_options(query)]]
    if isinstance(relaxed, Chem.MolBundle):
        conditions.append([query_options(relaxed.GetMol(i)) for i in range(relaxed.Size())])
    elif relaxed is not None:
        conditions.append([query_options(relaxed)])
    return conditions


def _without_h(query: Chem.Mol) -> Chem.Mol:
    """The query with its hydrogen atoms (``[#1]``) and their bonds removed."""
    hydrogens = [a.GetIdx() for a in query.GetAtoms() if a.GetAtomicNum() == 1]
    if not hydrogens:
        return query
    rw = Chem.RWMol(query)
    for i in sorted(hydrogens, reverse=True):
        rw.RemoveAtom(i)
    return rw.GetMol()


def _relaxed(query: Chem.Mol) -> Chem.Mol | Chem.MolBundle | None:
    """A recursion-free query that matches wherever ``query`` does (None: it has no recursion,
    or the relaxed form did not parse): its ``relax`` form; for a query that is one atom and
    nothing but recursive alternatives, ``[$(X),$(Y)]`` (it matches where X or Y does), a
    bundle of the relaxed X and Y whole (matched when one is), which screen far more than
    their first atoms."""
    smarts = Chem.MolToSmarts(query)
    if "$(" not in smarts:
        return None
    try:
        with rdBase.BlockLogs():
            forms = [Chem.MolFromSmarts(relax(x)) for x in _alternatives(smarts)]
    except ValueError:  # unbalanced: RDKit writes none such; no relaxed form then
        return None
    if any(f is None for f in forms):
        return None
    if len(forms) == 1:
        return forms[0]
    bundle = Chem.MolBundle()
    for f in forms:
        bundle.AddMol(f)
    return bundle


def _alternatives(smarts: str) -> list[str]:
    """``[$(X),$(Y)]`` -> [X, Y]; any other SMARTS -> [itself]."""
    if not smarts.startswith("[") or _closing(smarts, 0) != len(smarts) - 1:
        return [smarts]
    parts, i, inner = [], 0, smarts[1:-1]
    while inner.startswith("$(", i):
        end = _closing(inner, i + 1, "()")
        if end < 0:
            break
        parts.append(inner[i + 2:end])
        i = end + 1
        if i == len(inner):
            return parts
        if inner[i] != ",":
            break
        i += 1
    return [smarts]


def _inlined(query: Chem.Mol) -> Chem.Mol:
    smarts = Chem.MolToSmarts(query)
    simpler = inline_atoms(smarts)
    return query if simpler == smarts else (Chem.MolFromSmarts(simpler) or query)


_ENTRY = re.compile(rb"1 0 0 (\d+) ")


def _entry_query(entry) -> Chem.Mol | None:
    """The query of a catalog entry that is one SMARTS matched at least once (all of PAINS,
    Brenk, NIH: min count 1, no max), read from RDKit's serialized entry; None otherwise."""
    try:
        body = entry.Serialize().split(b"\n", 2)[2]
        m = _ENTRY.match(body)
        pos = m.end() + int(m.group(1)) + 1
        m = re.compile(rb"(\d+) ").match(body, pos)
        size, pos = int(m.group(1)), m.end()
        # re-parsed from its SMARTS: an unpickled recursive query matches ~5x slower
        query = Chem.MolFromSmarts(Chem.MolToSmarts(Chem.Mol(body[pos:pos + size])))
        low, high = body[pos + size:].split(b" ", 3)[1:3]
    except Exception:  # another matcher kind or another archive layout
        return None
    return query if query is not None and (int(low), int(high)) == (1, _UINT_MAX) else None


@functools.cache
def catalog_alerts(name: str) -> AlertSet:
    """One of RDKit's filter catalogs (``CATALOGS``) as a screened alert set; alert names
    are the catalog's descriptions (``ene_rhod_A(235)``, ``Michael_acceptor_1``)."""
    params = FilterCatalogParams()
    params.AddCatalog(getattr(FilterCatalogParams.FilterCatalogs, name.upper()))
    catalog = FilterCatalog(params)
    rules, unscreened = [], []
    for i in range(catalog.GetNumEntries()):
        entry = catalog.GetEntryWithIdx(i)
        query = _entry_query(entry)
        if query is None:
            unscreened.append((entry.GetDescription(), entry))
        else:
            rules.append((entry.GetDescription(), query))
    return _make(rules, tuple(unscreened))


@functools.cache
def moses_rules() -> AlertSet:
    """MOSES medicinal-chemistry SMARTS (mcf.csv + wehi_pains.csv from molsets 0.3.1, MIT),
    named ``MCF1``.. and ``PAINS:<regId>``; matched against the molecule with explicit Hs."""
    rules = []
    with open(DATA_DIR / "moses_mcf.csv", newline="") as fh:
        rules += [(row["names"], row["smarts"]) for row in csv.DictReader(fh)]
    with open(DATA_DIR / "moses_wehi_pains.csv", newline="") as fh:
        for row in csv.reader(fh):
            if row:
                reg = row[1].strip().removeprefix("<regId=").removesuffix(">") if len(row) > 1 else ""
                rules.append((f"PAINS:{reg}" if reg else "PAINS", row[0].strip()))
    with rdBase.BlockLogs():
        parsed = [(n, Chem.MolFromSmarts(s)) for n, s in rules]
    return _make([(n, q) for n, q in parsed if q is not None], heavy_screen=True)


@functools.cache
def qed_alerts() -> AlertSet:
    """QED's 116 unwanted-group SMARTS (Bickerton et al. 2012, RDKit's ``QED.StructuralAlerts``)."""
    from rdkit.Chem import QED

    return _make([(f"QED{i + 1}", q) for i, q in enumerate(QED.StructuralAlerts)])
