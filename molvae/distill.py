"""Refinement distilled into the decoder.

Refinement (``generate.refine``) turns each decoded prior draw into a molecule the model
writes back to itself, at ~3x the cost of sampling. ``make_pairs`` records, for prior draws
z, the molecule refinement makes of them; training with ``train.distill`` set to such a file
teaches the decoder to write that molecule from z directly, beside its usual molecules,
aiming at an unrefined sampler that writes what the refined one does (measured in
docs/sample_quality.md, session 25).

``make_request_pairs`` does the same for a conditional model's requests: for random
requests, codes drawn as a request draws them and, of the molecule the decoder writes from
each and a few it draws at a temperature from the same code, the nearest new hit (as
``generate.condition_draws`` keeps one); with the condition inputs kept, training on them
teaches the requester's weights (``model.request_flag``) to write in one draw what the
nearest of several is (docs/conditional.md, session 29).
"""

from __future__ import annotations

import contextlib
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
    """Prior draws ``z`` (N, Z) and the token rows (N, L) of what refinement made of them;
    request pairs also hold the decoder's condition input of each draw (N, C)."""

    z: np.ndarray
    tokens: np.ndarray
    lengths: np.ndarray
    smiles: np.ndarray
    source: str = ""  # the sha256 of the model file that drew them ('' = not recorded)
    condition: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.z)

    def rows(self, sl: slice | np.ndarray) -> Pairs:
        cond = None if self.condition is None else self.condition[sl]
        return Pairs(self.z[sl], self.tokens[sl], self.lengths[sl], self.smiles[sl], self.source,
                     cond)

    def split(self, n: int) -> tuple[Pairs, Pairs]:
        """(all rows but the last ``n``, the last ``n``): training and validation rows."""
        cut = len(self) - n
        return self.rows(slice(None, cut)), self.rows(slice(cut, None))

    def batch(self, idx: np.ndarray, device: torch.device
              ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """z, tokens (cut to the longest) and condition inputs (or None) of the rows ``idx``."""
        width = int(self.lengths[idx].max())
        cond = None if self.condition is None else torch.from_numpy(self.condition[idx]).to(device)
        return (torch.from_numpy(self.z[idx]).to(device),
                torch.from_numpy(self.tokens[idx, :width].astype(np.int64)).to(device), cond)


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
    from . import generate
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
    return _pairs_of(loaded, _run_jobs(loaded, jobs, _pairs_chunk, workers, progress), n)


def _run_jobs(loaded: LoadedModel, jobs: list[tuple], chunk: Callable, workers: int | None,
              progress: Callable[[int], None] | None) -> list[tuple]:
    """``chunk`` of each job, in order, in worker processes (each with the model) or here;
    each result with the job's draws first."""
    from . import generate, parallel

    workers = parallel.resolve_workers(workers)
    parts = []
    with contextlib.ExitStack() as stack:
        if workers > 1 and len(jobs) > 1 and parallel.START_METHOD == "fork":
            pool = stack.enter_context(parallel.pool(workers, generate._start_worker, (loaded,)))
            done = pool.imap(chunk, jobs)
        else:
            done = (chunk(job, loaded) for job in jobs)
        for job, part in zip(jobs, done, strict=True):
            parts.append((job[0], *part))
            if progress:
                progress(len(job[0]))
    return parts


def _pairs_of(loaded: LoadedModel, parts: list[tuple], n: int,
              conditions: list[np.ndarray] | None = None) -> Pairs:
    """The kept rows of every job (``_run_jobs``'s results; with each job's condition
    inputs, request pairs)."""
    from .data import file_digest

    if not sum(len(ok) for _, ok, _, _, _ in parts):
        raise DataError(f"none of the {n:,} draws gave a molecule the model's vocabulary "
                        "writes: no pairs")
    width = max(t.shape[1] for _, _, t, _, _ in parts)
    cond = None if conditions is None else np.concatenate(
        [c[ok] for c, (_, ok, *_) in zip(conditions, parts, strict=True)]).astype(np.float32)
    return Pairs(
        z=np.concatenate([np.asarray(z)[ok] for z, ok, _, _, _ in parts]).astype(np.float32),
        tokens=np.concatenate([np.pad(t, ((0, 0), (0, width - t.shape[1])))
                               for _, _, t, _, _ in parts]),
        lengths=np.concatenate([ln for _, _, _, ln, _ in parts]),
        smiles=np.array([s for *_, smi in parts for s in smi], dtype=str),
        source=file_digest(loaded.path) if loaded.path else "", condition=cond)


def save_pairs(pairs: Pairs, vocab: Vocab, path: str | Path) -> Path:
    """An .npz file (no pickled objects), with the vocabulary it is written in and the
    digest of the model that drew them."""
    path = Path(path)
    cond = {} if pairs.condition is None else {"condition": pairs.condition}
    with atomic_path(path) as tmp, open(tmp, "wb") as fh:
        np.savez(fh, z=pairs.z, tokens=pairs.tokens, lengths=pairs.lengths, smiles=pairs.smiles,
                 vocab=np.array(vocab.to_list(), dtype=str), source=np.array(pairs.source), **cond)
    return path


def pairs_file(path: str | Path) -> Path:
    """``path``, if it is a file (checked before a training run prepares its data)."""
    path = Path(path)
    if not path.is_file():
        what = "a folder, not a pairs file" if path.is_dir() else "no such pairs file"
        raise DataError(f"{path}: {what} (make one with `molvae data pairs`)")
    return path


def load_pairs(path: str | Path, vocab: Vocab, latent_size: int,
               start: str | Path | None = None, condition_size: int = 0) -> Pairs:
    """A pairs file for a model of this vocabulary, latent size and condition input (request
    pairs: ``condition_size`` numbers); DataError otherwise. A warning when another model
    than ``start`` (the weights a training starts from) drew them: their codes are that
    model's."""
    from .data import file_digest

    path = pairs_file(path)
    try:
        with np.load(path, allow_pickle=False) as f:
            pairs = Pairs(f["z"], f["tokens"], f["lengths"], f["smiles"],
                          str(f["source"]) if "source" in f.files else "",
                          f["condition"] if "condition" in f.files else None)
            tokens = f["vocab"].tolist()
    except (OSError, ValueError, KeyError) as exc:
        raise DataError(f"{path}: not a pairs file ({type(exc).__name__})") from None
    if tokens != vocab.to_list():
        raise DataError(f"{path}: its vocabulary differs from the model's")
    if pairs.z.ndim != 2 or pairs.z.shape[1] != latent_size or not len(pairs):
        raise DataError(f"{path}: codes of shape {pairs.z.shape}, the model's are "
                        f"(N, {latent_size})")
    if pairs.condition is not None and pairs.condition.shape != (len(pairs), condition_size):
        raise DataError(f"{path}: request pairs, with condition inputs of shape "
                        f"{pairs.condition.shape}; the model's are (N, {condition_size})"
                        if condition_size else f"{path}: request pairs; this model is not "
                        "conditional")
    if start is not None and pairs.source and pairs.source != file_digest(start):
        logger.warning("%s: drawn by another model than %s, the weights this training starts "
                       "from; their codes are that model's", path, start)
    return pairs


def check_trainee(pairs: Pairs | None, sample_flag: bool, request_flag: bool,
                  sampler_only: bool) -> None:
    """TrainingError where ``train.sampler_only`` would train nothing: request pairs teach
    the requester's weights (``model.request_flag``), prior pairs the sampler's
    (``model.sample_flag``); a warning for adapter weights left untrained."""
    from .errors import TrainingError

    if pairs is None:
        if sample_flag or request_flag:
            logger.warning("model.sample_flag or request_flag without train.distill: their "
                           "weights are not trained")
        return
    request = pairs.condition is not None
    if sampler_only and not (request_flag if request else sample_flag):
        raise TrainingError(
            f"train.sampler_only with {'request' if request else 'prior'} pairs trains the "
            f"{'requester' if request else 'sampler'}'s weights: the model needs them "
            f"(model.{'request_flag' if request else 'sample_flag'} = true)")


def _rows_loss(model: torch.nn.Module, pairs: Pairs, idx: np.ndarray, device: torch.device,
               amp: bool = False) -> torch.Tensor:
    """Summed token cross-entropy of the rows ``idx``: each refined molecule written from its
    prior draw with no condition (by the sampler's weights, in a model with them), or each
    request pair's molecule from its draw and condition (by the requester's weights)."""
    z, tokens, cond = pairs.batch(idx, device)
    with torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp):
        logits = model.decoder(z, tokens, cond, sampling=True)
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


# --------------------------------------------------------------------------- request pairs

REQUEST_CODES = 32  # draws per random request


def random_request(rng: np.random.Generator, space, props: np.ndarray) -> dict:
    """A random request on the model's RDKit conditions: one property (60%), two (25%) or
    three (15%), each a value (a stored code's molecule's, or uniform between the 1% and
    99% quantiles of theirs; whole numbers where theirs are) or, for the others, a range
    about it (30%) up to one standard deviation wide."""
    from . import chem

    names = [n for n in space.names if n in chem.PROPERTIES]
    chosen = rng.choice(names, size=min(len(names), rng.choice([1, 2, 3], p=[0.6, 0.25, 0.15])),
                        replace=False)
    out: dict = {}
    for name in chosen:
        j = space.names.index(name)
        col = props[:, j]
        whole = bool(np.all(col == np.round(col)))
        v = (float(col[rng.integers(len(col))]) if rng.random() < 0.5 else
             float(rng.uniform(*np.quantile(col, [0.01, 0.99]))))
        v = float(np.clip(round(v) if whole else v, space.low[j], space.high[j]))
        if not whole and rng.random() < 0.3:
            half = space.std[j] * rng.uniform(0.15, 0.5)
            out[name] = (max(space.low[j], v - half), min(space.high[j], v + half))
        else:
            out[name] = v
    return out


def _request_chunk(job: tuple, loaded: LoadedModel | None = None) -> tuple:
    """One request's draws -> (row index of each kept draw, token rows, lengths, SMILES):
    per draw, of its greedy molecule and ``draws - 1`` drawn at the temperature of ``cfg``,
    the one a request keeps (``generate._closest``)."""
    from . import generate
    from .vocab import tokenize_smiles

    loaded = loaded or generate._WORKER_MODEL
    z, cond, targets, seed, cfg, draws = job
    ids = [generate._decode_batch(loaded, z, seed + k, cfg, greedy=k == 0, condition=cond,
                                  sampling=True) for k in range(draws)]
    cands = [generate.decode_ids(loaded.vocab, x) for x in ids]
    pairs = [cands[k][i] for i in range(len(z)) for k in range(draws)]  # each draw's in a run
    keep = generate._closest(loaded, pairs, targets, draws, 1)
    smiles = [pairs[i][1] for i in keep]
    batch = tokenize_smiles(loaded.vocab, smiles, False, canonical=True)
    ok = np.flatnonzero(batch.ok)
    return ok, batch.tokens[ok], batch.lengths[ok], [smiles[i] for i in ok]


def make_request_pairs(loaded: LoadedModel, n: int, seed: int = 0,
                       cfg: GenerateConfig | None = None, draws: int = 4,
                       workers: int | None = None,
                       progress: Callable[[int], None] | None = None) -> Pairs:
    """``n`` draws of random requests (``random_request``, ``REQUEST_CODES`` codes each, drawn
    as ``generate.sample`` draws a request's) and the molecule kept of ``draws`` written from
    each (``_request_chunk``; ``cfg.temperature`` for all but the first, 0.8 unless set),
    with the condition input of each draw."""
    from . import generate
    from .latent import LatentPrior, check_loaded

    check_loaded(loaded, "make_request_pairs")
    if loaded.conditions is None:
        raise DataError(f"{loaded.path or 'this model'} is not a conditional model: request "
                        "pairs need one")
    if loaded.prior is None or loaded.prior.get("properties") is None:
        raise DataError("request pairs draw the stored codes of molecules near each request: "
                        "this model stores none with their properties (`molvae prior`)")
    if draws < 2:
        raise DataError(f"request pairs keep the nearest of several draws: draws must be at "
                        f"least 2, got {draws}")
    cfg = generate.settings(cfg)
    if cfg.temperature == 1.0 and "temperature" not in cfg.model_fields_set:
        cfg = cfg.model_copy(update={"temperature": 0.8})
    rng, gen = np.random.default_rng(seed), torch.Generator().manual_seed(seed)
    width = cfg.prior_width or loaded.sampling.get("condition_width")
    props = loaded.prior["properties"].numpy()
    jobs = []
    for lo in range(0, n, REQUEST_CODES):
        targets = loaded.conditions.check(random_request(rng, loaded.conditions, props))
        latent = LatentPrior(loaded, "posterior", gen, width=width, targets=targets)
        z = latent(min(REQUEST_CODES, n - lo)).cpu()
        cond, _ = latent.condition(len(z))
        jobs.append((z, cond.cpu(), targets, int(rng.integers(0, 2**62)), cfg, draws))
    parts = _run_jobs(loaded, jobs, _request_chunk, workers, progress)
    return _pairs_of(loaded, parts, n, [job[1].numpy() for job in jobs])
