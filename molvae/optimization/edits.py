"""Molecules one SELFIES edit away from a given one: a token replaced, inserted or deleted
at random (the mutations of STONED, Nigam et al., Chem. Sci. 2021, 12, 7079). Every edited
string decodes to a valid molecule, and one token changes little of it: the local moves a
similarity-constrained search needs where decoding around the molecule's latent code does
not come back close enough."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import selfies as sf

from .. import chem


def selfies_edits(smiles: str, n: int, alphabet: Sequence[str], rng: np.random.Generator
                  ) -> list[str]:
    """``n`` canonical SMILES one edit from ``smiles`` ('' where an edit gives nothing new
    or the molecule has no SELFIES); symbols drawn from ``alphabet``."""
    try:
        tokens = list(sf.split_selfies(sf.encoder(smiles)))
    except (sf.EncoderError, TypeError):
        return [""] * n
    out = []
    for _ in range(n):
        t = list(tokens)
        op = int(rng.integers(3)) if len(t) > 1 else int(rng.integers(2))
        symbol = alphabet[int(rng.integers(len(alphabet)))]
        if op == 0:
            t[int(rng.integers(len(t)))] = symbol
        elif op == 1:
            t.insert(int(rng.integers(len(t) + 1)), symbol)
        else:
            del t[int(rng.integers(len(t)))]
        try:
            edited = chem.canonical_smiles(sf.decoder("".join(t))) or ""
        except sf.DecoderError:
            edited = ""
        out.append(edited)
    return out
