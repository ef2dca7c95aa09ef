"""The SELFIES layer: SMILES <-> SELFIES and the token vocabulary.

Token ids: 0 = <pad>, 1 = <bos>, 2 = <eos>, then the SELFIES symbols of the training data
in sorted order. The vocabulary is saved with every model trained on it (``to_list``).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence

import selfies as sf

logger = logging.getLogger(__name__)

PAD, BOS, EOS = "<pad>", "<bos>", "<eos>"
SPECIALS = (PAD, BOS, EOS)
PAD_ID, BOS_ID, EOS_ID = 0, 1, 2


class VocabError(ValueError):
    """A molecule uses SELFIES tokens the vocabulary does not have."""

    def __init__(self, smiles: str, tokens: Sequence[str]):
        self.smiles = smiles
        self.tokens = list(tokens)
        super().__init__(
            f"molecule {smiles!r} has token(s) outside the vocabulary: {', '.join(self.tokens)}"
        )


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

    def encode(self, selfies: str, smiles: str = "") -> list[int]:
        """``[bos, tokens..., eos]`` ids; raises VocabError naming unknown tokens."""
        try:
            ids = [self.index[t] for t in sf.split_selfies(selfies)]
        except KeyError:
            raise VocabError(smiles or selfies, self.unknown(selfies)) from None
        return [BOS_ID, *ids, EOS_ID]

    def encode_smiles(self, smiles: str) -> list[int]:
        """Token ids of one SMILES; raises VocabError (unknown tokens) or ValueError."""
        s = smiles_to_selfies(smiles)
        if s is None:
            raise ValueError(f"cannot encode {smiles!r} as SELFIES")
        return self.encode(s, smiles)

    def decode(self, ids: Iterable[int]) -> str:
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
