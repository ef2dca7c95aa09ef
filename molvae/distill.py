"""Refinement distilled into the decoder.

Refinement (``generate.refine``) turns each decoded prior draw into a molecule the model
writes back to itself, at ~3x the cost of sampling. ``make_pairs`` records, for prior draws
z, the molecule refinement makes of them; training with ``train.distill`` set to such a file
teaches the decoder to write that molecule from z directly, beside its usual molecules,
aiming at an unrefined sampler that writes what the refined one does (measured in
docs/sample_quality.md, session 25).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from .checkpoint import LoadedModel
from .config import GenerateConfig
from .errors import DataError
from .files import atomic_path
from .model import reconstruction_loss
from .vocab import Vocab

# Training reads pairs without RDKit: generating them (generate, chem) is imported there only.

BATCH = 500
logger = logging.getLogger(__name__)


@dataclass
class Pairs:
    """Prior draws ``z`` (N, Z) and the token rows (N, L) of what refinement made of them."""

    z: np.ndarray
    tokens: np.ndarray
    lengths: np.ndarray
    smiles: np.ndarray
    source: str = ""  # the sha256 of the model file that drew them ('' = not recorded)

    def __len__(self) -> int:
        return len(self.z)

    def split(self, n: int) -> tuple[Pairs, Pairs]:
        """(all rows but the last ``n``, the last ``n``): training and validation rows."""
        cut = len(self) - n
        return (Pairs(self.z[:cut], self.tokens[:cut], self.lengths[:cut], self.smiles[:cut],
                      self.source),
                Pairs(self.z[cut:], self.tokens[cut:], self.lengths[cut:], self.smiles[cut:],
                      self.source))

    def batch(self, idx: np.ndarray, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
        """z and tokens (cut to the longest) of the rows ``idx``."""
        width = int(self.lengths[idx].max())
        return (torch.from_numpy(self.z[idx]).to(device),
                torch.from_numpy(self.tokens[idx, :width].astype(np.int64)).to(device))


def _pairs_chunk(job: tuple, loaded: LoadedModel | None = None) -> tuple:
    """One batch of draws -> (row index of each kept draw, token rows, lengths, SMILES)."""
    from . import generate
    from .vocab import tokenize_smiles

    loaded = loaded or generate._WORKER_MODEL
    z, seed, cfg = job  # decoded and refined as `sample` does (generate._sample_chunk)
    smiles = [smi for _, smi in generate._sample_chunk((z, seed, cfg, None, None), loaded)]
    batch = tokenize_smiles(loaded.vocab, smiles, False, canonical=True)
    ok = np.flatnonzero(batch.ok)
    return ok, batch.tokens[ok], batch.lengths[ok], [smiles[i] for i in ok]


def make_pairs(loaded: LoadedModel, n: int, seed: int = 0, cfg: GenerateConfig | None = None,
               workers: int | None = None, progress: Callable[[int], None] | None = None
               ) -> Pairs:
    """``n`` prior draws of the model's own sampler (``cfg``: its settings, refinement
    included) and the refined molecule of each (draws that end in nothing valid left out)."""
    from . import generate, parallel
    from .data import file_digest
    from .latent import LatentPrior, check_loaded

    check_loaded(loaded, "make_pairs")
    cfg = generate.settings(cfg)
    if cfg.condition:
        raise DataError("pairs are drawn from the unconditional prior: give no condition")
    if not generate.uses_refine(loaded, cfg):
        raise DataError("pairs need refinement passes to distill: this model stores none "
                        "(give --refine N, or generate.refine in Python)")
    gen = torch.Generator().manual_seed(seed)
    latent = LatentPrior(loaded, cfg.prior, gen, (0, 1), None, generate.uses_width(loaded, cfg))
    jobs = []
    for lo in range(0, n, BATCH):
        batch_seed = int(torch.randint(0, 2**62, (1,), generator=gen))
        jobs.append((latent(min(BATCH, n - lo)).cpu(), batch_seed, cfg))
    parts = []  # worker processes (each with the model) or here
    done = parallel.imap_forked(_pairs_chunk, jobs, parallel.resolve_workers(workers),
                                generate._start_worker, (loaded,), (loaded,))
    for job, part in zip(jobs, done, strict=True):
        parts.append((job[0], *part))
        if progress:
            progress(len(job[0]))
    if not sum(len(ok) for _, ok, _, _, _ in parts):
        raise DataError(f"none of the {n:,} draws gave a molecule the model's vocabulary "
                        "writes: no pairs")
    width = max(t.shape[1] for _, _, t, _, _ in parts)
    return Pairs(
        z=np.concatenate([z[ok].numpy() for z, ok, _, _, _ in parts]).astype(np.float32),
        tokens=np.concatenate([np.pad(t, ((0, 0), (0, width - t.shape[1])))
                               for _, _, t, _, _ in parts]),
        lengths=np.concatenate([ln for _, _, _, ln, _ in parts]),
        smiles=np.array([s for *_, smi in parts for s in smi], dtype=str),
        source=file_digest(loaded.path) if loaded.path else "")


def save_pairs(pairs: Pairs, vocab: Vocab, path: str | Path) -> Path:
    """An .npz file (no pickled objects), with the vocabulary it is written in and the
    digest of the model that drew them."""
    path = Path(path)
    with atomic_path(path) as tmp, open(tmp, "wb") as fh:
        np.savez(fh, z=pairs.z, tokens=pairs.tokens, lengths=pairs.lengths, smiles=pairs.smiles,
                 vocab=np.array(vocab.to_list(), dtype=str), source=np.array(pairs.source))
    return path


def pairs_file(path: str | Path) -> Path:
    """``path``, if it is a file (checked before a training run prepares its data)."""
    path = Path(path)
    if not path.is_file():
        what = "a folder, not a pairs file" if path.is_dir() else "no such pairs file"
        raise DataError(f"{path}: {what} (make one with `molvae data pairs`)")
    return path


def load_pairs(path: str | Path, vocab: Vocab, latent_size: int,
               start: str | Path | None = None) -> Pairs:
    """A pairs file for a model of this vocabulary and latent size; DataError otherwise.
    A warning when another model than ``start`` (the weights a training starts from) drew
    them: their codes are that model's."""
    from .data import file_digest

    path = pairs_file(path)
    try:
        with np.load(path, allow_pickle=False) as f:
            pairs = Pairs(f["z"], f["tokens"], f["lengths"], f["smiles"],
                          str(f["source"]) if "source" in f.files else "")
            tokens = f["vocab"].tolist()
    except (OSError, ValueError, KeyError) as exc:
        raise DataError(f"{path}: not a pairs file ({type(exc).__name__})") from None
    if tokens != vocab.to_list():
        raise DataError(f"{path}: its vocabulary differs from the model's")
    if pairs.z.ndim != 2 or pairs.z.shape[1] != latent_size or not len(pairs):
        raise DataError(f"{path}: codes of shape {pairs.z.shape}, the model's are "
                        f"(N, {latent_size})")
    if start is not None and pairs.source and pairs.source != file_digest(start):
        logger.warning("%s: drawn by another model than %s, the weights this training starts "
                       "from; their codes are that model's", path, start)
    return pairs


def _rows_loss(model: torch.nn.Module, pairs: Pairs, idx: np.ndarray, device: torch.device,
               amp: bool = False) -> torch.Tensor:
    """Summed token cross-entropy of the rows ``idx``: each refined molecule written from its
    prior draw with no condition (by the sampler's weights, in a model with them)."""
    z, tokens = pairs.batch(idx, device)
    with torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp):
        logits = model.decoder(z, tokens, None, sampling=True)
    return reconstruction_loss(logits.float(), tokens)


def distill_loss(model: torch.nn.Module, pairs: Pairs, n: int, seed: tuple[int, int],
                 device: torch.device, amp: bool) -> torch.Tensor:
    """The decoder's loss (``_rows_loss``, mean over rows) on ``n`` random rows of ``pairs``."""
    idx = np.random.default_rng(seed).integers(0, len(pairs), n)
    return _rows_loss(model, pairs, idx, device, amp).mean()


@torch.no_grad()
def pairs_loss(model: torch.nn.Module, pairs: Pairs, device: torch.device,
               batch_size: int = 512) -> float:
    """``distill_loss`` over every row of ``pairs``, in order (a validation figure)."""
    total = sum(float(_rows_loss(model, pairs, np.arange(i, min(i + batch_size, len(pairs))),
                                 device).sum()) for i in range(0, len(pairs), batch_size))
    return total / max(1, len(pairs))
