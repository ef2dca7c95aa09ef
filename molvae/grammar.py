"""Decode-time ring-size grammar for SELFIES: never emit a ring closure that leaves a ring of
a size the training data does not contain.

A SELFIES ring token ``[RingN]`` (or ``[=RingN]``, ``[-/RingN]``, ...) is followed by N index
tokens giving Q; the ring bond joins the current atom to the atom Q + 1 places back in
derivation order (clipped at atom 0). One wrong index token gives an odd ring (8, 10, 13
atoms...). :class:`RingSizeConstraint` follows the partial derivation of every molecule of a
decoding batch, token by token, exactly as ``selfies.decoder`` (selfies 2.x) derives it, and
bans the next tokens that would close a ring of a size outside the allowed set:

* an index token none of whose completions (the remaining index tokens, or the string ending
  there, which reads the missing ones as 0) gives an acceptable closure;
* a ring token none of whose index values gives an acceptable closure.

A closure is acceptable when it makes no new ring (the partner is the atom itself, or the
two atoms are already bonded: selfies then raises the bond order), or when the ring it makes
has an allowed size: the shortest path between its two atoms in the graph so far, plus one.

Fused rings: the SELFIES encoder often closes a fused bicycle's perimeter first (9 atoms for
5+6, 10 for 6+6) and splits it with a second closure at the same atom right after it (
``...[C][Ring1][=Branch2][=Ring1][Branch1]``); 7% of MOSES training molecules do this. So a
closure of a disallowed size is also acceptable when it can be split that way; it then
obliges the very next token to be a ring token at the same atom whose closure leaves only
allowed sizes: its own ring, and the smallest ring through the perimeter bond.

selfies forms ring bonds only after the whole string is derived, and drops one when either
atom has no free valence left by then, so whether an earlier ring bond exists can depend on
tokens not yet emitted. The tracker bounds every atom's final bond count (the bonds it has,
plus the free valence of the derivation levels still able to add bonds to it) and uses an
earlier ring bond for path lengths only when it is certain to form. The size it computes is
then never below the size the finished molecule has, so with an allowed set without holes
(3..k) no ring it lets through exceeds k. When no earlier ring bond is in doubt (nearly
always) the size is exact.

Token ids follow the vocabulary (0, 1, 2 = <pad>, <bos>, <eos>). Bond capacities come from
selfies' semantic constraints current when the constraint is built.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Collection, Iterable, Sequence

import selfies as sf
import torch
from selfies.constants import INDEX_CODE
from selfies.grammar_rules import process_atom_symbol, process_branch_symbol, process_ring_symbol

__all__ = ["RingSizeConstraint", "RingSizeState", "allowed_ring_sizes", "ring_closure_sizes"]

_BASE = len(INDEX_CODE)  # 16: index tokens are base-16 digits, most significant first
_MAX_DIGITS = 3  # [Ring3], [Branch3]

# token kinds
_NOP, _ATOM, _BRANCH, _RING, _EPS, _DOT, _EOS, _INVALID = range(8)
# index tokens being read
_NONE, _PEND_BRANCH, _PEND_RING = 0, 1, 2
# derivation status
_ACTIVE, _DONE, _ERROR = 0, 1, 2
# closure partner classes
_OK, _SPLIT, _BAD = 0, 1, 2

_SPECIAL_NOP = ("<pad>", "<bos>")  # Vocab.decode skips them: invisible like [nop]
_SPECIAL_EOS = "<eos>"


class _TokenTable:
    """Per-token-id facts, computed once from the vocabulary with selfies' own parsers."""

    def __init__(self, tokens: Sequence[str]):
        n = len(tokens)
        self.kind = [_INVALID] * n
        self.bond = [0] * n  # atom: bond order of its prefix ([=C] -> 2)
        self.cap = [0] * n  # atom: bonding capacity
        self.btype = [0] * n  # branch: bond order ([=Branch1] -> 2)
        self.rorder = [0] * n  # ring: bond order ([=Ring1] -> 2)
        self.ndigits = [0] * n  # branch/ring: number of index tokens that follow
        self.code = [0] * n  # value of the token when read as an index token
        for i, tok in enumerate(tokens):
            self.code[i] = INDEX_CODE.get(tok, 0)
            self.kind[i] = self._classify(i, tok)

    def _classify(self, i: int, tok: str) -> int:
        # Same dispatch as selfies.decoder._derive_mol_from_symbols.
        if tok in _SPECIAL_NOP or tok == "[nop]":
            return _NOP  # _tokenize_selfies drops [nop]
        if tok == _SPECIAL_EOS:
            return _EOS
        if tok == ".":
            return _DOT
        if tok[-4:-2] == "ch":
            out = process_branch_symbol(tok)
            if out is None:
                return _INVALID
            self.btype[i], self.ndigits[i] = out
            return _BRANCH
        if tok[-4:-2] == "ng":
            out = process_ring_symbol(tok)
            if out is None:
                return _INVALID
            self.rorder[i], self.ndigits[i], _ = out
            return _RING
        if "eps" in tok:
            return _EPS
        out = process_atom_symbol(tok)
        if out is None:
            return _INVALID
        (bond, _), atom = out
        self.bond[i] = int(bond)
        self.cap[i] = int(atom.bonding_capacity)
        return _ATOM


class _Bounds:
    """What the ring bonds closed so far will be once selfies forms them."""

    __slots__ = ("certain", "possible", "hi", "left")

    def __init__(self, certain: dict[int, list[int]], possible: dict[int, list[int]] | None,
                 hi: list[int], left: set[int]):
        self.certain = certain  # ring-bond adjacency of the bonds certain to exist
        self.possible = possible  # adjacency of all that may exist; None = no doubt
        self.hi = hi  # upper bound of each atom's bond count after them
        self.left = left  # atoms that are the left (earlier) atom of a ring closure


class _Derivation:
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
            # any token is an index token here, read by its INDEX_CODE value
            self.pend_value = self.pend_value * _BASE + t.code[tok]
            self.pend_left -= 1
            if self.pend_left == 0:
                self._finish_index()
            return
        self.version += 1
        split_of, self.split_of = self.split_of, -1
        if kind == _EOS or kind == _DOT:
            if self.pend:  # _read_index_from_selfies: a missing index token reads as 0
                self.pend_value *= _BASE**self.pend_left
                self.pend_left = 0
                self._finish_index()
            self.split_of = -1
            if kind == _EOS:
                self.status = _DONE
            else:  # decoder(): each '.'-fragment is derived from state 0, no root atom
                self.levels = [[-1, 0, 0, -1]]
            return
        if self.pend:  # a branch's index token
            self.pend_value = self.pend_value * _BASE + t.code[tok]
            self.pend_left -= 1
            if self.pend_left == 0:
                self._finish_index()
            return

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

    # ------------------------------------------------------------------ ring analysis

    def _bounds(self, n_rings: int) -> _Bounds:
        """Interval version of ``_form_rings_bilocally`` over the first ``n_rings`` closures:
        lo/hi bound each atom's bond count when each ring bond is tried, the derivation
        bonds still to come being at most the state of every live level whose current atom
        it is. A ring bond is certain when it has room under hi, impossible without room
        under lo, in doubt otherwise."""
        certain: dict[int, list[int]] = {}
        hi = list(self.deriv)
        left: set[int] = set()
        for prev, state, _, _ in self.levels:
            if state > 0 and prev >= 0:
                hi[prev] += state
        if self.pend == _PEND_BRANCH and self.levels[-1][0] >= 0:
            hi[self.levels[-1][0]] += self.pend_arg
        if not n_rings:
            return _Bounds(certain, None, hi, left)
        lo = list(self.deriv)
        caps, parent = self.caps, self.parent
        edge: dict[tuple[int, int], bool] = {}  # ring bond -> certain (True) / in doubt
        doubt = False
        for a, b, order in self.rings[:n_rings]:
            if a == b:
                continue
            left.add(a)
            lf_hi, rf_hi = caps[a] - lo[a], caps[b] - lo[b]
            if lf_hi <= 0 or rf_hi <= 0:
                continue  # certainly no room
            lf_lo, rf_lo = caps[a] - hi[a], caps[b] - hi[b]
            o_hi = min(order, lf_hi, rf_hi)
            key = (a, b) if a < b else (b, a)
            if parent[key[1]] == key[0] or edge.get(key) is True:
                pass  # raises the order of an existing bond by 0..o_hi
            elif lf_lo > 0 and rf_lo > 0:
                if key not in edge:  # a new bond for sure
                    o_lo = min(order, lf_lo, rf_lo)
                    lo[a] += o_lo
                    lo[b] += o_lo
                edge[key] = True  # new, or raises a bond in doubt: exists either way
            else:
                edge.setdefault(key, False)
                doubt = True
            hi[a] += o_hi
            hi[b] += o_hi
        possible: dict[int, list[int]] | None = {} if doubt else None
        for (a, b), sure in edge.items():
            if sure:
                certain.setdefault(a, []).append(b)
                certain.setdefault(b, []).append(a)
            if possible is not None:
                possible.setdefault(a, []).append(b)
                possible.setdefault(b, []).append(a)
        return _Bounds(certain, possible, hi, left)

    def _distances(self, src: int, extra: dict[int, list[int]]) -> list[int]:
        """BFS hop counts from src over tree bonds + extra bonds (-1 = unreachable)."""
        dist = [-1] * len(self.caps)
        dist[src] = 0
        frontier = [src]
        adj = self.adj
        d = 0
        while frontier:
            d += 1
            nxt = []
            for u in frontier:
                for v in adj[u]:
                    if dist[v] < 0:
                        dist[v] = d
                        nxt.append(v)
                if u in extra:
                    for v in extra[u]:
                        if dist[v] < 0:
                            dist[v] = d
                            nxt.append(v)
            frontier = nxt
        return dist

    def _sizes(self, r: int, bounds: _Bounds, dist: list[int] | None = None
               ) -> tuple[list[int], list[int]]:
        """(sizes, dist): for each candidate partner L <= r of a closure at atom r, the size
        of the ring it makes (0: none, the atom itself or already bonded or another
        fragment; -1: unbounded, joined only through ring bonds in doubt), and BFS hop
        counts from r over the certain graph (computed unless given)."""
        if dist is None:
            dist = self._distances(r, bounds.certain)
        far = None
        out = []
        for L in range(r + 1):
            d = dist[L]
            if d > 1:
                out.append(d + 1)
            elif d >= 0 or bounds.possible is None:
                out.append(0)
            else:
                if far is None:
                    far = self._distances(r, bounds.possible)
                out.append(0 if far[L] < 0 else -1)
        return out, dist

    def partner_sizes(self, r: int) -> list[int]:
        """Size of the ring a closure at atom r would make with each partner L <= r."""
        return self._sizes(r, self._bounds(len(self.rings)))[0]

    def classes(self, r: int) -> list[int]:
        """For each candidate partner L <= r of a closure at atom r: _OK (no ring, or an
        allowed size), _SPLIT (a perimeter that a second closure at r can split into
        allowed rings, should the level take one more ring token) or _BAD. Cached per state.
        """
        key = (self.version, r, -1)
        if self._cls_key == key:
            return self._cls
        c = self.c
        allowed, split_k = c.allowed, c.split_k
        bounds = self._bounds(len(self.rings))
        if r in bounds.left:  # r's own free valence is not guaranteed: no splits
            sizes, _ = self._sizes(r, bounds)
            cls = [_OK if s == 0 or s in allowed else _BAD for s in sizes]
        else:
            dist, masks = self._split_bfs(r, bounds)
            sizes = self._sizes(r, bounds, dist)[0]
            n_k = len(split_k)
            cls = [_OK if s == 0 or s in allowed
                   else _SPLIT if 0 < s < n_k and masks[L] & split_k[s] else _BAD
                   for L, s in enumerate(sizes)]
        self._cls_key, self._cls = key, cls
        return cls

    def _split_bfs(self, r: int, bounds: _Bounds) -> tuple[list[int], list[int]]:
        """BFS from r over the certain graph -> (dist, masks): masks[L] has bit k set when
        a shortest path r -> L passes, k bonds from r, through an atom L2 (not L) that a
        second closure at r can reach and surely bond to (free valence left under the upper
        bound, no ring bond to r in doubt). Closing on L2 splits a perimeter r-L of size s
        into rings k + 1 and s - k + 1."""
        c = self.c
        hi, caps = bounds.hi, self.caps
        adj, certain = self.adj, bounds.certain
        near = bounds.possible.get(r, ()) if bounds.possible is not None else ()
        reach_any, reach_0 = c._reach_any, c._reach_max >= r - 1
        n = len(caps)
        dist = [-1] * n
        masks = [0] * n
        dist[r] = 0
        frontier = [r]
        d = 0
        while frontier:
            d += 1
            nxt = []
            for u in frontier:
                m = masks[u]
                if (u < r and caps[u] > hi[u] and u not in near
                        and ((r - 1 - u) in reach_any if u else reach_0)):
                    m |= 1 << (d - 1)
                for nb in (adj[u], certain[u]) if u in certain else (adj[u],):
                    for v in nb:
                        dv = dist[v]
                        if dv < 0:
                            dist[v] = d
                            nxt.append(v)
                            masks[v] = m
                        elif dv == d:
                            masks[v] |= m
            frontier = nxt
        return dist, masks

    def split_classes(self, r: int, l1: int) -> list[int]:
        """For a closure at r that must split the perimeter bond l1-r (the last closure):
        _OK for each partner L2 that surely makes a new bond and leaves allowed sizes, else
        _BAD. Cached per state."""
        key = (self.version, r, l1)
        if self._cls_key == key:
            return self._cls
        allowed = self.c.allowed
        bounds = self._bounds(len(self.rings) - 1)  # without the perimeter bond
        d_r = self._distances(r, bounds.certain)
        d_l = self._distances(l1, bounds.certain)
        near = bounds.possible.get(r, ()) if bounds.possible is not None else ()
        cls = []
        for l2 in range(r + 1):
            a, b = d_r[l2], d_l[l2]
            ok = (l2 != l1 and a >= 2 and b >= 0 and self.caps[l2] - bounds.hi[l2] > 0
                  and l2 not in near
                  and a + 1 in allowed  # its ring if the perimeter bond does not form
                  and min(a, b + 1) + 1 in allowed  # its ring with it
                  and min(d_r[l1], b + 1) + 1 in allowed)  # smallest ring through it
            cls.append(_OK if ok else _BAD)
        self._cls_key, self._cls = key, cls
        return cls

    # ------------------------------------------------------------------ the finished molecule

    def final_bonds(self) -> dict[tuple[int, int], int]:
        """All bonds of the finished molecule, (i, j) with i < j -> bond order."""
        return self._form_rings()[0]

    def final_sizes(self) -> list[int]:
        """For each closure that adds a bond in the finished molecule, in closure order: the
        size of the smallest ring through that bond."""
        bonds, new = self._form_rings()
        extra: dict[int, list[int]] = {a: [] for a in range(len(self.caps))}
        for a, b in new:
            extra[a].append(b)
            extra[b].append(a)
        sizes = []
        for a, b in new:
            extra[a].remove(b)
            extra[b].remove(a)
            d = self._distances(a, extra)[b]
            if d > 0:  # else a bond between two fragments: no ring
                sizes.append(d + 1)
            extra[a].append(b)
            extra[b].append(a)
        return sizes

    def _form_rings(self) -> tuple[dict[tuple[int, int], int], list[tuple[int, int]]]:
        """``_form_rings_bilocally`` on the derived graph: each ring bond, in closure order,
        is skipped (same atom, or either atom without free valence), merged into an
        existing bond (order raised, at most 3) or added with order min(order, free
        valences). -> (all bonds, the ring bonds added, in order)."""
        count = list(self.deriv)
        order_of: dict[tuple[int, int], int] = {}
        for i, p in enumerate(self.parent):
            if p >= 0:
                order_of[(p, i)] = self.porder[i]
        new = []
        for a, b, order in self.rings:
            if a == b:
                continue
            lfree, rfree = self.caps[a] - count[a], self.caps[b] - count[b]
            if lfree <= 0 or rfree <= 0:
                continue
            order = min(order, lfree, rfree)
            key = (a, b) if a < b else (b, a)
            if key in order_of:
                old = order_of[key]
                order = min(order + old, 3) - old
            else:
                new.append(key)
            order_of[key] = order_of.get(key, 0) + order
            count[a] += order
            count[b] += order
        return order_of, new


class RingSizeConstraint:
    """Bans ring closures that would leave a ring of a size outside ``allowed_sizes``.

    tokens: the vocabulary, token id -> token string (ids 0, 1, 2 = <pad>, <bos>, <eos>).
    allowed_sizes: ring sizes (atoms) that may be formed, e.g. ``range(3, 8)`` or
    :func:`allowed_ring_sizes` of the training SELFIES.
    """

    def __init__(self, tokens: list[str], allowed_sizes: Collection[int]):
        self.tokens = list(tokens)
        self.allowed = frozenset(int(s) for s in allowed_sizes)
        # split_k[s]: bit k set when a perimeter of s atoms split by a closure k bonds away
        # from the closing atom leaves allowed rings: k + 1 (the second ring without the
        # perimeter bond), min(k, s - k) + 1 (with it), s - k + 1 (through the perimeter)
        a = self.allowed
        top = max(a, default=0)
        self.split_k = [sum(1 << k for k in range(2, s - 1)
                            if k + 1 in a and s - k + 1 in a and min(k, s - k) + 1 in a)
                        for s in range(2 * top - 1)]
        self.table = t = _TokenTable(self.tokens)
        v = self.vocab_size = len(self.tokens)
        emit = [t.kind[i] not in (_NOP, _EOS, _DOT) for i in range(v)]
        # index values some token carries (the end of the string reads as 0)
        self.codes = sorted({t.code[i] for i in range(v) if emit[i]} | {0})
        self.code_ids: list[list[int]] = [[] for _ in range(_BASE)]  # index value -> ids
        for i in range(v):
            if emit[i]:
                self.code_ids[t.code[i]].append(i)
        self.end_ids = [i for i in range(v) if t.kind[i] in (_EOS, _DOT)]
        self.ring_ids = [i for i in range(v) if t.kind[i] == _RING]
        # everything but ring tokens and invisible ones: banned while a split is due
        self.not_ring = [i for i in range(v) if t.kind[i] not in (_RING, _NOP)]
        # index values reachable with k index tokens, ascending, k = 0..3
        self.reach: list[list[int]] = [[0]]
        for _ in range(_MAX_DIGITS):
            self.reach.append(sorted(p * _BASE + c for p in self.reach[-1] for c in self.codes))
        digits = sorted({t.ndigits[i] for i in self.ring_ids})
        self._reach_any = set().union(*(self.reach[n] for n in digits)) if digits else set()
        self._reach_max = max(self._reach_any, default=-1)
        # index values every ring token can take: a partner at such a Q is always on offer
        self._reach_all = (set.intersection(*(set(self.reach[n]) for n in digits))
                           if digits else set())

    def start(self, batch_size: int) -> RingSizeState:
        """A fresh state for ``batch_size`` molecules decoded together."""
        return RingSizeState(self, batch_size)

    # ------------------------------------------------------------------ helpers

    def reachable(self, r: int, partner: int) -> bool:
        """Can some ring token of the vocabulary at atom r close on ``partner`` (< r)?"""
        if partner == 0:
            return self._reach_max >= r - 1
        return r - 1 - partner in self._reach_any

    def _any_ok(self, cls: list[int], r: int, base: int, k: int, worst: int) -> bool:
        """Is some index value base * 16**k + x (x reachable with k more index tokens) of
        a closure at atom r of class <= worst? Values >= r - 1 all close on atom 0."""
        top = r - 1
        start = base * _BASE**k
        if start >= top:
            return cls[0] <= worst
        for x in self.reach[k]:
            q = start + x
            if q >= top:
                return cls[0] <= worst
            if cls[top - q] <= worst:
                return True
        return False

    def _ring_bans(self, cls: list[int], d: _Derivation, split: bool) -> list[int]:
        """Ring tokens that cannot close acceptably at the current atom."""
        t = self.table
        lvl = d.levels[-1]
        r, state = lvl[0], lvl[1]
        out = []
        for i in self.ring_ids:
            n = t.ndigits[i]
            if split:
                worst = _OK
            else:  # after this ring token, can the level take one more at r?
                left = state - min(t.rorder[i], state)
                more = left > 0 and (lvl[3] < 0 or lvl[2] + 1 + n < lvl[3])
                worst = _SPLIT if more else _OK
            if not self._any_ok(cls, r, 0, n, worst):
                out.append(i)
        return out

    def row_ban(self, d: _Derivation) -> list[int] | None:
        """The token ids one molecule may not emit next; None when it may emit any."""
        if d.pend == _PEND_RING:
            r = d.pend_r
            if r <= 0:
                return None  # closes on atom 0 itself whatever Q is: no ring
            if d.pend_split >= 0:
                cls, worst = d.split_classes(r, d.pend_split), _OK
            else:
                lvl = d.levels[-1]  # the ring's level, its state already spent
                more = lvl[1] > 0 and (lvl[3] < 0 or lvl[2] < lvl[3])
                cls, worst = d.classes(r), (_SPLIT if more else _OK)
            k = d.pend_left - 1  # index tokens after the next one
            p = d.pend_value
            bad = [c for c in self.codes if not self._any_ok(cls, r, p * _BASE + c, k, worst)]
            # the string ending here completes the index with zeros, and no split follows
            end_bad = not self._any_ok(cls, r, p * _BASE**(k + 1), 0, _OK)
            if len(bad) == len(self.codes) or (not bad and not end_bad):
                return None  # never ban every token of a row
            out = [i for c in bad for i in self.code_ids[c]]
            if end_bad:
                out.extend(self.end_ids)
            return out
        r = d.levels[-1][0]
        if d.split_of >= 0:
            bans = self._ring_bans(d.split_classes(r, d.split_of), d, True)
            if len(bans) == len(self.ring_ids):
                return None
            return self.not_ring + bans
        return self._ring_bans(d.classes(r), d, False) or None

    def needs_check(self, d: _Derivation) -> bool:
        """May the next token of this molecule be banned? A ring index being read, a
        perimeter to split, or a ring token at an atom whose tree parent is not among the
        partners every ring token can reach (closing on the parent makes no ring, so a
        ring token is always acceptable then)."""
        if d.status != _ACTIVE:
            return False
        if d.pend:
            return d.pend == _PEND_RING
        if d.split_of >= 0:
            return True
        lvl = d.levels[-1]
        r = lvl[0]
        if lvl[1] <= 0 or r <= 0:
            return False
        p = d.parent[r]
        return p < 0 or (r - 1 - p) not in self._reach_all


class RingSizeState:
    """Decoding state of :class:`RingSizeConstraint` for a batch; rows are batch rows."""

    def __init__(self, constraint: RingSizeConstraint, batch_size: int):
        self.c = constraint
        self.rows = [_Derivation(constraint.table, constraint) for _ in range(batch_size)]
        self._check: set[int] = set()  # rows whose next token may be banned

    def banned(self, alive: torch.Tensor) -> torch.Tensor | None:
        """alive (b',) batch row indices -> bool (b', V), True = banned next token; None
        when no row bans anything (most steps)."""
        if not self._check:
            return None
        check, rows, row_ban = self._check, self.rows, self.c.row_ban
        pos_ids: list[int] = []
        tok_ids: list[int] = []
        for pos, row in enumerate(alive.tolist()):
            if row in check:
                ban = row_ban(rows[row])
                if ban is not None:
                    pos_ids.extend([pos] * len(ban))
                    tok_ids.extend(ban)
        if not pos_ids:
            return None
        mask = torch.zeros(alive.shape[0], self.c.vocab_size, dtype=torch.bool)
        mask[pos_ids, tok_ids] = True
        return mask.to(alive.device)

    def advance(self, alive: torch.Tensor, tokens: torch.Tensor) -> None:
        """alive (b',) batch row indices, tokens (b',) the ids those rows just emitted."""
        rows, check, needs = self.rows, self._check, self.c.needs_check
        for row, tok in zip(alive.tolist(), tokens.tolist(), strict=True):
            d = rows[row]
            d.feed(tok)
            if needs(d):
                check.add(row)
            else:
                check.discard(row)

    def derivation(self, row: int) -> _Derivation:
        """The derivation tracker of one batch row (for inspection and tests)."""
        return self.rows[row]


def _derivation(selfies_string: str, record: bool = False) -> _Derivation:
    tokens = [*sf.split_selfies(selfies_string), _SPECIAL_EOS]
    vocab = sorted(set(tokens))
    ids = {t: i for i, t in enumerate(vocab)}
    d = _Derivation(_TokenTable(vocab), record=record)
    for tok in tokens:
        d.feed(ids[tok])
    if d.status == _ERROR:
        raise sf.DecoderError(f"invalid SELFIES {selfies_string!r}")
    return d


def ring_closure_sizes(selfies_string: str, at_decode_time: bool = False) -> list[int]:
    """Ring sizes of the closures of a SELFIES string, in closure order.

    Default: for each closure that adds a bond to the decoded molecule, the size of the
    smallest ring through that bond (closures that add none, being on the atom itself,
    onto an existing bond or without free valence, are left out). For simple ring systems
    these are the SSSR ring sizes. ``at_decode_time``: for every closure, the size of the
    ring it makes with the bonds before it (0 for none), as the constraint first sees it; a
    fused perimeter counts here with its full size.

    Raises selfies.DecoderError for a string selfies cannot decode.
    """
    d = _derivation(selfies_string, record=at_decode_time)
    return list(d.decode_sizes) if at_decode_time else d.final_sizes()


def allowed_ring_sizes(selfies_strings: Iterable[str], min_share: float = 1e-5) -> list[int]:
    """Ring sizes (``ring_closure_sizes``) of at least max(1, min_share * number of ring
    closures) closures of ``selfies_strings``, ascending."""
    counts: Counter[int] = Counter()
    for s in selfies_strings:
        counts.update(ring_closure_sizes(s))
    need = max(1.0, min_share * sum(counts.values()))
    return sorted(size for size, c in counts.items() if c >= need)
