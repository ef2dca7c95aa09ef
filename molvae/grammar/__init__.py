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
from collections.abc import Collection, Iterable

import selfies as sf
import torch

from .derivation import _Derivation
from .tokens import (
    _ACTIVE,
    _BASE,
    _DOT,
    _EOS,
    _ERROR,
    _MAX_DIGITS,
    _NOP,
    _OK,
    _PEND_RING,
    _RING,
    _SPECIAL_EOS,
    _SPLIT,
    _TokenTable,
)

__all__ = ["RingSizeConstraint", "RingSizeState", "allowed_ring_sizes", "ring_closure_sizes"]


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
