"""Walks through the latent space around given molecules: the path between two or more
molecules (``interpolate``) and analogues around one (``neighbors``).

A conditional model is given each molecule's own properties (``latent.own_condition``), as
``generate.reconstruct`` gives them: a CVAE writes x back from its code *and* c(x), and from
the code alone it may start somewhere else (the shipped model: paracetamol's code alone
decodes to a bromophenol). ``code_only=True`` walks from the codes alone.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import pandas as pd
import torch

from . import chem
from .checkpoint import LoadedModel
from .errors import GenerationError
from .generate import _frame, decode_latent, settings
from .latent import device_of, encode_batches, own_condition, slerp
from .vocab import tokenize_smiles


def _codes(loaded: LoadedModel, smiles: list[str], code_only: bool
           ) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Latent means (N, Z) and, for a conditional model, each molecule's own condition input
    (N, C) given to its encoder (None with ``code_only`` or an unconditional model)."""
    batch = tokenize_smiles(loaded.vocab, smiles, strict=True)  # a bad molecule: its one error
    own = None if code_only else own_condition(loaded, batch.canonical)
    mu, _ = encode_batches(loaded.model, batch.tokens, batch.lengths, len(smiles),
                           device_of(loaded), own)
    return mu, own


@torch.no_grad()
def interpolate(loaded: LoadedModel, smiles: Sequence[str], steps: int = 10,
                method: str = "linear", max_length: int = 100, code_only: bool = False,
                progress: Callable[[int], None] | None = None) -> pd.DataFrame:
    """Walk the latent path through 2+ molecules (``steps`` points per segment, ends
    included) and decode each point greedily; a conditional model's condition input moves
    from one molecule's own properties to the next one's along with the code. Columns add
    segment, step, t, and the similarity to the segment's start and end molecules.
    ``progress(k)`` after each segment's k points (``neighbors``: each radius's)."""
    if isinstance(smiles, str):
        raise GenerationError("interpolation needs a list of at least two SMILES, not one string")
    smiles = list(smiles)
    if len(smiles) < 2:
        raise GenerationError("interpolation needs at least two molecules")
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 2:
        raise GenerationError(f"steps must be a whole number >= 2, got {steps!r}")
    if method not in ("linear", "slerp"):
        raise GenerationError(f"unknown interpolation method {method!r} (linear, slerp)")
    mu, own = _codes(loaded, smiles, code_only)
    t = torch.linspace(0, 1, steps)
    frames = []
    for k in range(len(smiles) - 1):
        a, b = mu[k], mu[k + 1]
        z = (1 - t)[:, None] * a + t[:, None] * b if method == "linear" else slerp(a, b, t)
        c = None if own is None else (1 - t)[:, None] * own[k] + t[:, None] * own[k + 1]
        pairs = decode_latent(loaded, z, settings(max_length=max_length), condition=c)
        df = _frame(pairs, "interpolation", segment=k, step=np.arange(steps), t=t.numpy())
        df["sim_start"] = chem.bulk_tanimoto(smiles[k], df["smiles"].tolist())
        df["sim_end"] = chem.bulk_tanimoto(smiles[k + 1], df["smiles"].tolist())
        frames.append(df)
        if progress:
            progress(steps)
    return pd.concat(frames, ignore_index=True)


@torch.no_grad()
def neighbors(loaded: LoadedModel, smiles: str, radii: Sequence[float] = (0.1, 0.25, 0.5),
              per_radius: int = 20, seed: int = 0, max_length: int = 100,
              code_only: bool = False, progress: Callable[[int], None] | None = None
              ) -> pd.DataFrame:
    """Analogues of one molecule: decode z = mu + r * eps, eps ~ N(0, I), for each radius r
    (in prior standard deviations), with the molecule explored around (``center``) and
    each analogue's Tanimoto similarity to it; a conditional model is given the molecule's
    own properties for every analogue. ``df.attrs["center_decoded"]``: what the molecule's
    own code decodes to ('' when nothing valid)."""
    if not isinstance(smiles, str):
        raise GenerationError(f"neighbors explores around one SMILES string, got {type(smiles).__name__}")
    if per_radius < 1:
        raise GenerationError(f"molecules per radius must be >= 1, got {per_radius}")
    radii = [radii] if isinstance(radii, int | float) else radii  # one radius
    if not radii or any(not isinstance(r, int | float) or r < 0 for r in radii):
        raise GenerationError(f"radii must be a non-empty list of values >= 0, got {list(radii)}")
    mu, own = _codes(loaded, [smiles], code_only)
    gen = torch.Generator().manual_seed(seed)
    frames = []
    for r in radii:
        eps = torch.randn(per_radius, mu.shape[1], generator=gen)
        c = None if own is None else own.expand(per_radius, -1)
        pairs = decode_latent(loaded, mu + r * eps, settings(max_length=max_length), condition=c)
        frames.append(_frame(pairs, "neighbors", seed=seed, radius=float(r),
                             step=np.arange(per_radius)))
        if progress:
            progress(per_radius)
    df = pd.concat(frames, ignore_index=True)
    # what the molecule's own code decodes to: where the analogues are drawn around
    df.attrs["center_decoded"] = decode_latent(loaded, mu, settings(max_length=max_length),
                                               condition=own)[0][1]
    df["center"] = chem.canonical_smiles(smiles) or smiles
    df["similarity"] = chem.bulk_tanimoto(smiles, df["smiles"].tolist())
    return df
