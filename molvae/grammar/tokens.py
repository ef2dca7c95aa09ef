"""SELFIES tokens as the grammar reads them: per-token-id facts from selfies' own parsers,
and the constants the derivation tracker shares."""

from __future__ import annotations

from collections.abc import Sequence

from selfies.constants import INDEX_CODE
from selfies.grammar_rules import process_atom_symbol, process_branch_symbol, process_ring_symbol

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
