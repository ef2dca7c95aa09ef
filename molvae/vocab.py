"""The SELFIES layer: SMILES <-> SELFIES and the token vocabulary.

Token ids: 0 = <pad>, 1 = <bos>, 2 = <eos>, then the SELFIES symbols of the training data
in sorted order. The vocabulary is saved with every model trained on it (``to_list``).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np
import selfies as sf

from .errors import InvalidMoleculeError, VocabError

logger = logging.getLogger(__name__)

PAD, BOS, EOS = "<pad>", "<bos>", "<eos>"
SPECIALS = (PAD, BOS, EOS)
PAD_ID, BOS_ID, EOS_ID = 0, 1, 2


def smiles_to_selfies(smiles: str) -> str | None:
    """SELFIES for a SMILES string, or None when selfies cannot encode it."""
    try:
        return sf.encoder(smiles)
    except sf.EncoderError:
        return None


def selfies_to_smiles(selfies: str) -> str | None:
    """SMILES for a SELFIES string ('' decodes to None)."""
    try:
        out = sf.decoder(selfies)
    except sf.DecoderError:
        return None
    return out or None


def split_tokens(selfies: str) -> list[str]:
    return list(sf.split_selfies(selfies))


class Vocab:
    """SELFIES symbols <-> ids with the special tokens first."""

    def __init__(self, tokens: Sequence[str]):
        tokens = list(tokens)
        if tuple(tokens[:3]) != SPECIALS:
            raise ValueError(f"vocabulary must start with {SPECIALS}, got {tokens[:3]}")
        if len(set(tokens)) != len(tokens):
            raise ValueError("vocabulary has duplicate tokens")
        self.tokens = tokens
        self.index = {t: i for i, t in enumerate(tokens)}

    @classmethod
    def build(cls, selfies: Iterable[str]) -> Vocab:
        symbols: set[str] = set()
        for s in selfies:
            symbols.update(sf.split_selfies(s))
        return cls([*SPECIALS, *sorted(symbols)])

    def __len__(self) -> int:
        return len(self.tokens)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Vocab) and self.tokens == other.tokens

    def to_list(self) -> list[str]:
        return list(self.tokens)

    @classmethod
    def from_list(cls, tokens: Sequence[str]) -> Vocab:
        return cls(tokens)

    def structural_ids(self) -> list[int]:
        """Ids of [Ring...] and [Branch...] tokens: a SELFIES string made only of them
        decodes to nothing, so generation never starts with one."""
        return [i for i, t in enumerate(self.tokens) if "Ring" in t or "Branch" in t]

    def unknown(self, selfies: str) -> list[str]:
        """Tokens of ``selfies`` that are not in the vocabulary (sorted, unique)."""
        return sorted({t for t in sf.split_selfies(selfies) if t not in self.index})

    def to_ids(self, selfies: str, smiles: str = "") -> list[int]:
        """``[bos, tokens..., eos]`` ids; raises VocabError naming unknown tokens."""
        try:
            ids = [self.index[t] for t in sf.split_selfies(selfies)]
        except KeyError:
            raise VocabError(smiles or selfies, self.unknown(selfies)) from None
        return [BOS_ID, *ids, EOS_ID]

    def to_selfies(self, ids: Iterable[int]) -> str:
        """SELFIES string from ids: stops at <eos>, skips <pad>/<bos>."""
        out = []
        for i in ids:
            i = int(i)
            if i == EOS_ID:
                break
            if i in (PAD_ID, BOS_ID):
                continue
            out.append(self.tokens[i])
        return "".join(out)


# --------------------------------------------------------------------------- batch encoders


def tokenize_selfies(
    selfies: Sequence[str], vocab: Vocab | None = None
) -> tuple[np.ndarray, np.ndarray, Vocab, np.ndarray]:
    """Token ids (N, L) padded, lengths, the vocab (built if None), and a keep mask
    (False where a molecule has tokens outside a given vocab).

    One molecule at a time into a preallocated array: holding every molecule's token
    list at once costs ~3 GB of small strings on the full MOSES set.
    """
    n_tokens = np.fromiter((s.count("[") for s in selfies), dtype=np.int32, count=len(selfies))
    width = int(n_tokens.max(initial=0)) + 2
    # Ids in order of first appearance while building; remapped to sorted order below.
    if vocab is not None:
        index: dict[str, int] = dict(vocab.index)
    else:
        index = {t: i for i, t in enumerate(SPECIALS)}
    growing = vocab is None
    tokens = np.full((len(selfies), width), PAD_ID, dtype=np.int32)
    keep = np.ones(len(selfies), dtype=bool)
    for r, sel in enumerate(selfies):
        row = tokens[r]
        row[0] = BOS_ID
        j = 1
        for tok in split_tokens(sel):
            i = index.get(tok)
            if i is None:
                if not growing:
                    keep[r] = False
                    break
                i = index[tok] = len(index)
            row[j] = i
            j += 1
        row[j] = EOS_ID
    if growing:
        ordered = [*SPECIALS, *sorted(t for t in index if t not in SPECIALS)]
        vocab = Vocab(ordered)
        remap = np.zeros(len(index), dtype=np.int32)
        for tok, i in index.items():
            remap[i] = vocab.index[tok]
        tokens = remap[tokens]
    tokens = tokens[keep]
    lengths = (n_tokens[keep] + 2).astype(np.int32)
    if len(tokens):
        tokens = tokens[:, : int(lengths.max())]
    dtype = np.uint8 if len(vocab) < 256 else np.int16
    return tokens.astype(dtype), lengths, vocab, keep


@dataclass
class TokenBatch:
    """Molecules as model input: ``tokens`` (N, L) ids padded with <pad>, ``lengths`` (N,)
    with <bos>/<eos>, ``canonical`` SMILES ('' when invalid) and ``errors`` (None = encoded;
    else why the molecule was dropped; its row is all <pad>)."""

    tokens: np.ndarray
    lengths: np.ndarray
    canonical: list[str]
    errors: list[str | None]

    @property
    def ok(self) -> np.ndarray:
        return np.array([e is None for e in self.errors], dtype=bool)


def tokenize_smiles(vocab: Vocab, smiles: Sequence[str], strict: bool = True,
                    canonical: bool = False) -> TokenBatch:
    """User molecules -> model input with a fixed vocabulary (the model's).

    With ``strict``, an invalid SMILES or unknown tokens raise InvalidMoleculeError;
    otherwise such molecules get an error string and the batch goes on. ``canonical``: the
    SMILES are RDKit canonical already (decoded molecules are), not parsed again.
    """
    from . import chem  # here, not at import: training from a token file needs no RDKit

    rows: list[list[int]] = []
    canon: list[str] = []
    errors: list[str | None] = []
    for s in smiles:
        can = (s or None) if canonical else chem.canonical_smiles(s)
        err, ids = None, []
        if can is None:
            err = f"not a valid molecule: {s!r}"
        elif (sel := smiles_to_selfies(can)) is None:
            err = f"cannot encode {s!r} as SELFIES"
        else:
            try:
                ids = vocab.to_ids(sel, s)
            except VocabError as exc:
                err = str(exc)
        if err and strict:
            raise InvalidMoleculeError(err)
        rows.append(ids or [PAD_ID, PAD_ID])
        canon.append(can or "")
        errors.append(err)
    width = max((len(r) for r in rows), default=2)
    tokens = np.full((len(rows), width), PAD_ID, dtype=np.int64)
    for i, r in enumerate(rows):
        tokens[i, : len(r)] = r
    lengths = np.array([max(len(r), 2) for r in rows], dtype=np.int64)
    return TokenBatch(tokens, lengths, canon, errors)
