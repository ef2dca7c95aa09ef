"""The partial SELFIES derivation of one molecule, fed one token id at a time."""

from __future__ import annotations

from typing import TYPE_CHECKING

from .rings import _RingAnalysis
from .tokens import (
    _ACTIVE,
    _ATOM,
    _BASE,
    _BRANCH,
    _DONE,
    _DOT,
    _EOS,
    _EPS,
    _ERROR,
    _NONE,
    _NOP,
    _PEND_BRANCH,
    _PEND_RING,
    _RING,
    _SPLIT,
    _TokenTable,
)

if TYPE_CHECKING:
    from . import RingSizeConstraint


class _Derivation(_RingAnalysis):
    """The partial derivation of one molecule, fed one token id at a time.

    Mirrors ``selfies.decoder``: a stack of derivation levels (the main chain and the open
    branches, each ``[prev_atom, state, n_derived, max_derive]``; state -1 = None, the level
    has stopped; max_derive -1 = unbounded), atoms in derivation order with their tree bonds,
    and the ring closures in the order ``_form_rings_bilocally`` will try them.
    """

    __slots__ = ("t", "c", "record", "status", "caps", "deriv", "parent", "porder", "adj",
                 "levels", "pend", "pend_left", "pend_value", "pend_r", "pend_arg",
                 "pend_split", "split_of", "rings", "decode_sizes", "version", "_cls_key",
                 "_cls")

    def __init__(self, table: _TokenTable, constraint: RingSizeConstraint | None = None,
                 record: bool = False):
        self.t = table
        self.c = constraint
        self.record = record  # keep decode_sizes (one BFS per closure)
        self.status = _ACTIVE
        self.caps: list[int] = []  # bonding capacity per atom
        self.deriv: list[int] = []  # sum of tree bond orders per atom
        self.parent: list[int] = []  # tree parent per atom, -1 for a fragment root
        self.porder: list[int] = []  # order of the bond to the parent
        self.adj: list[list[int]] = []  # tree adjacency
        self.levels: list[list[int]] = [[-1, 0, 0, -1]]
        self.pend = _NONE
        self.pend_left = 0  # index tokens still to read
        self.pend_value = 0  # index value read so far
        self.pend_r = -1  # ring: the atom that closes it
        self.pend_arg = 0  # ring: bond order; branch: initial state of the branch
        self.pend_split = -1  # ring: left atom of the perimeter this closure must split
        self.split_of = -1  # left atom of a perimeter the next token must split
        self.rings: list[tuple[int, int, int]] = []  # (left atom, right atom, order)
        self.decode_sizes: list[int] = []  # fundamental size of each closure, 0 = no ring
        self.version = 0  # changes whenever the graph or the levels change
        self._cls_key: tuple[int, int, int] = (-1, -1, -1)
        self._cls: list[int] = []

    # ------------------------------------------------------------------ feeding tokens

    def feed(self, tok: int) -> None:
        """Derive one more token id, as ``_derive_mol_from_symbols`` reads it."""
        if self.status != _ACTIVE:
            return
        t = self.t
        kind = t.kind[tok]
        if kind == _ATOM and not self.pend and self.split_of < 0:  # the common case, inlined
            lvl = self.levels[-1]
            state = lvl[1]
            if state > 0:
                self.version += 1
                lvl[2] += 1
                cap = t.cap[tok]
                order = min(t.bond[tok], state, cap)
                if order:
                    i, p = len(self.caps), lvl[0]
                    self.caps.append(cap)
                    self.deriv.append(order)
                    self.parent.append(p)
                    self.porder.append(order)
                    self.deriv[p] += order
                    self.adj[p].append(i)
                    self.adj.append([p])
                    lvl[0] = i
                    lvl[1] = cap - order if cap > order else -1
                else:  # capacity 0: not added, and the level stops
                    lvl[1] = -1
                if len(self.levels) > 1:
                    self._pop_finished()
                return
        if kind == _NOP:
            return
        if self.pend == _PEND_RING and kind != _EOS and kind != _DOT:
            self._read_index(tok)  # any token is an index token here, read by its INDEX_CODE
            return
        self.version += 1
        split_of, self.split_of = self.split_of, -1
        if kind == _EOS or kind == _DOT:
            self._end_fragment(kind)
        elif self.pend:  # a branch's index token
            self._read_index(tok)
        else:
            self._derive(tok, kind, split_of)

    def _read_index(self, tok: int) -> None:
        """One index token of the pending branch or ring."""
        self.pend_value = self.pend_value * _BASE + self.t.code[tok]
        self.pend_left -= 1
        if self.pend_left == 0:
            self._finish_index()

    def _end_fragment(self, kind: int) -> None:
        """<eos> ends the molecule; '.' starts a new fragment."""
        if self.pend:  # _read_index_from_selfies: a missing index token reads as 0
            self.pend_value *= _BASE**self.pend_left
            self.pend_left = 0
            self._finish_index()
        self.split_of = -1
        if kind == _EOS:
            self.status = _DONE
        else:  # decoder(): each '.'-fragment is derived from state 0, no root atom
            self.levels = [[-1, 0, 0, -1]]

    def _derive(self, tok: int, kind: int, split_of: int) -> None:
        """An atom, branch, ring or epsilon token on the current level."""
        t = self.t
        lvl = self.levels[-1]
        lvl[2] += 1  # n_derived += 1
        state = lvl[1]
        if state < 0:
            pass  # the level has stopped: the token is consumed unread
        elif kind == _ATOM:
            cap = t.cap[tok]
            if state == 0:  # next_atom_state: a new root, no bond
                self._add_atom(cap, -1, 0)
                lvl[0] = len(self.caps) - 1
                lvl[1] = cap if cap > 0 else -1
            else:
                order = min(t.bond[tok], state, cap)
                if order == 0:  # capacity 0: not added, and the level stops
                    lvl[1] = -1
                else:
                    self._add_atom(cap, lvl[0], order)
                    lvl[0] = len(self.caps) - 1
                    left = cap - order
                    lvl[1] = left if left > 0 else -1
        elif kind == _BRANCH:
            if state > 1:  # next_branch_state; at state <= 1 the branch token is ignored
                binit = min(state - 1, t.btype[tok])
                lvl[1] = state - binit
                n = t.ndigits[tok]
                lvl[2] += n
                self.pend, self.pend_left, self.pend_value, self.pend_arg = (
                    _PEND_BRANCH, n, 0, binit)
        elif kind == _RING:
            if state > 0:  # next_ring_state; at state 0 the ring token is ignored
                order = min(t.rorder[tok], state)
                left = state - order
                lvl[1] = left if left > 0 else -1
                n = t.ndigits[tok]
                lvl[2] += n
                self.pend, self.pend_left, self.pend_value = _PEND_RING, n, 0
                self.pend_r, self.pend_arg = lvl[0], order
                self.pend_split = split_of if split_of >= 0 and self.c is not None else -1
        elif kind == _EPS:
            lvl[1] = 0 if state == 0 else -1
        else:  # _INVALID: selfies.decoder raises DecoderError
            self.status = _ERROR
            return
        if not self.pend:
            self._pop_finished()

    def _add_atom(self, cap: int, parent: int, order: int) -> None:
        i = len(self.caps)
        self.caps.append(cap)
        self.deriv.append(order)
        self.parent.append(parent)
        self.porder.append(order)
        self.adj.append([])
        if parent >= 0:
            self.deriv[parent] += order
            self.adj[parent].append(i)
            self.adj[i].append(parent)

    def _finish_index(self) -> None:
        q = self.pend_value
        if self.pend == _PEND_RING:
            r = self.pend_r
            lidx = max(0, r - (q + 1))
            if self.record:
                self.decode_sizes.append(self.partner_sizes(r)[lidx])
            perimeter = (self.c is not None and self.pend_split < 0 and r > 0
                         and self.classes(r)[lidx] == _SPLIT)
            self.version += 1
            self.rings.append((lidx, r, self.pend_arg))
            self.pend_split = -1
            self.pend = _NONE
            self._pop_finished()
            lvl = self.levels[-1]
            if perimeter and lvl[0] == r and lvl[1] > 0 and self.status == _ACTIVE:
                self.split_of = lidx  # the next token must split the perimeter
            return
        # a branch derives at most Q + 1 tokens from the current atom
        self.version += 1
        self.levels.append([self.levels[-1][0], self.pend_arg, 0, q + 1])
        self.pend = _NONE
        self._pop_finished()

    def _pop_finished(self) -> None:
        """A branch level that has derived max_derive tokens returns its count to its
        parent (``n_derived += n + _derive_mol_from_symbols(...)``)."""
        levels = self.levels
        while len(levels) > 1 and levels[-1][2] >= levels[-1][3]:
            done = levels.pop()
            levels[-1][2] += done[2]
