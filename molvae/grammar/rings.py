"""Ring analysis of a partial derivation: which ring bonds will form, path lengths, the
size of the ring a closure makes, and the final bonds (``selfies`` forms rings last)."""

from __future__ import annotations

from .tokens import (
    _BAD,
    _OK,
    _PEND_BRANCH,
    _SPLIT,
)


class _Bounds:
    """What the ring bonds closed so far will be once selfies forms them."""

    __slots__ = ("certain", "possible", "hi", "left")

    def __init__(self, certain: dict[int, list[int]], possible: dict[int, list[int]] | None,
                 hi: list[int], left: set[int]):
        self.certain = certain  # ring-bond adjacency of the bonds certain to exist
        self.possible = possible  # adjacency of all that may exist; None = no doubt
        self.hi = hi  # upper bound of each atom's bond count after them
        self.left = left  # atoms that are the left (earlier) atom of a ring closure


class _RingAnalysis:
    """Mixed into ``_Derivation``: the questions a ring closure asks of the graph so far."""

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
