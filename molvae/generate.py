"""Decode latent points into molecules: prior samples, requests and reconstructions of a
trained model (walks around given molecules: ``molvae.walks``).

Every function returns a pandas DataFrame with one row per molecule (columns smiles,
selfies, valid, source, ...); ``molvae.annotate`` adds properties, filters and scores."""

from __future__ import annotations

import contextlib
import functools
import logging
from collections.abc import Callable, Sequence

import numpy as np
import pandas as pd
import torch

from . import chem, parallel
from .checkpoint import LoadedModel
from .conditions import describe, distance, hits
from .config import GenerateConfig, overridden
from .errors import GenerationError
from .grammar import RingSizeConstraint
from .latent import LatentPrior, check_loaded, device_of, encode_batches, own_condition, resolve_prior
from .steering import steered
from .vocab import Vocab, selfies_to_smiles, tokenize_smiles

logger = logging.getLogger(__name__)


# --------------------------------------------------------------------------- decoding


def _decode_chunk(tokens: list[str], rows: np.ndarray) -> list[tuple[str, str]]:
    vocab = Vocab(tokens)
    out = []
    for row in rows:
        sel = vocab.to_selfies(row)
        can = chem.canonical_smiles(selfies_to_smiles(sel)) if sel else None
        out.append((sel, can or ""))
    return out


def decode_ids(vocab: Vocab, ids: np.ndarray) -> list[tuple[str, str]]:
    """Token id rows -> (SELFIES, canonical SMILES or '') pairs."""
    return _decode_chunk(vocab.to_list(), ids)


def _frame(pairs: Sequence[tuple[str, str]], source: str, **cols) -> pd.DataFrame:
    df = pd.DataFrame(pairs, columns=["selfies", "smiles"])
    df.insert(0, "valid", df["smiles"] != "")
    df = df.assign(source=source, **cols)
    return df[["smiles", "selfies", "valid", "source", *cols]]


def settings(cfg: GenerateConfig | None = None, **overrides) -> GenerateConfig:
    """``cfg`` (default: GenerateConfig()) with ``overrides``, validated like a config file:
    an unknown name or a bad value raises ConfigError."""
    return overridden(GenerateConfig, cfg, overrides, "sample", "generate")  # type: ignore[return-value]


@functools.lru_cache(maxsize=4)
def _ring_constraint(tokens: tuple[str, ...], sizes: tuple[int, ...]) -> RingSizeConstraint:
    return RingSizeConstraint(list(tokens), sizes)


def ring_constraint(loaded: LoadedModel) -> RingSizeConstraint:
    """The ring grammar of ``loaded``: closures may only make ring sizes its training data has."""
    if not loaded.ring_sizes:
        raise GenerationError(
            f"{loaded.path or 'this model'} stores no training ring sizes, which the ring grammar "
            "needs: add them with `molvae prior TRAIN_FILE --model MODEL` (it stores them with "
            "the codes), or sample with generate.ring_grammar = false")
    return _ring_constraint(tuple(loaded.vocab.tokens), tuple(loaded.ring_sizes))


def _decode_batch(loaded: LoadedModel, z: torch.Tensor, seed: int, cfg: GenerateConfig,
                  greedy: bool | None = None, condition: torch.Tensor | None = None,
                  sampling: bool = False) -> np.ndarray:
    """z (B, Z) -> token ids (B, T) with the decoding settings of ``cfg`` (and a conditional
    model's condition input (B, C)); ``sampling``: unrefined prior draws (a sampler's weights)."""
    device, greedy = device_of(loaded), uses_greedy(loaded, cfg) if greedy is None else greedy
    gen = torch.Generator(device=device).manual_seed(seed)
    grammar = ring_constraint(loaded) if uses_ring_grammar(loaded, cfg) else None
    return loaded.model.decoder.generate(
        z.to(device), cfg.max_length, 0.0 if greedy else cfg.temperature,
        gen, loaded.vocab.structural_ids(), top_p=cfg.top_p,
        constraint=grammar if condition is None else steered(loaded, cfg, grammar),
        condition=None if condition is None else condition.to(device),
        guidance=uses_guidance(loaded, cfg), sampling=sampling and condition is None).cpu().numpy()


def uses_greedy(loaded: LoadedModel, cfg: GenerateConfig) -> bool:
    """``cfg.greedy``, where None means: drawn tokens when a temperature other than 1 or a
    nucleus (top_p) is asked for (they shape the draw), else the model's stored choice."""
    if cfg.greedy is not None:
        return cfg.greedy
    if cfg.temperature != 1.0 or cfg.top_p is not None:
        return False
    return bool(loaded.sampling.get("greedy", False))


def uses_guidance(loaded: LoadedModel, cfg: GenerateConfig) -> float:
    """``cfg.condition_guidance``, where None means: the model's stored choice for requests
    (else 1, no guidance)."""
    if cfg.condition_guidance is not None:
        return cfg.condition_guidance
    return float(loaded.sampling.get("condition_guidance", 1.0)) if cfg.condition else 1.0


def uses_width(loaded: LoadedModel, cfg: GenerateConfig) -> float | None:
    """``cfg.prior_width``, where None means: the model's stored width for requests or for its
    sampler's weights (unrefined draws), if any; else None (the width stored with the codes).
    A width with prior "normal" would change nothing: GenerationError."""
    if cfg.prior_width is not None and resolve_prior(loaded, cfg.prior) == "normal":
        raise GenerationError("generate.prior_width (--prior-width) scales the stored codes' "
                              "spreads; with prior normal (z ~ N(0, I)) it would change nothing")
    if cfg.prior_width is not None or cfg.condition:
        return cfg.prior_width or loaded.sampling.get("condition_width")
    sampler = loaded.model_config.sample_flag and not uses_refine(loaded, cfg)
    return loaded.sampling.get("sampler_width") if sampler else None


def uses_refine(loaded: LoadedModel, cfg: GenerateConfig) -> int:
    """``cfg.refine``, where None means: the model's stored choice (else 0), and none with a
    condition (refinement pulls molecules away from an unusual request: Spearman logP 0.78 -> 0.75)."""
    return cfg.refine if cfg.refine is not None else (
        0 if cfg.condition else int(loaded.sampling.get("refine", 0)))


def _refine_pass(loaded: LoadedModel, pairs: Sequence[tuple[str, str]], cfg: GenerateConfig,
                 seed: int, condition: torch.Tensor | None) -> list[tuple[str, str]]:
    """One refinement pass over decoded (SELFIES, SMILES) pairs: each molecule encoded
    (its canonical SELFIES, the latent mean; with a conditional model's condition input)
    and that code decoded greedily. A slip of the decoder becomes an odd molecule that the
    model does not write back to itself; the pass moves it to one it does (the decoder's
    fixed points are its typical molecules). A molecule the model cannot encode, or whose
    code decodes to nothing valid, stays as it was; one written back token for token is
    the same molecule, with its canonical SELFIES (no SELFIES decoding or RDKit needed)."""
    batch = tokenize_smiles(loaded.vocab, [smi for _, smi in pairs], False, canonical=True)
    ok = np.flatnonzero(batch.ok)
    out = list(pairs)
    if not len(ok):
        return out
    cond = None if condition is None else condition[torch.from_numpy(ok)]
    mu, _ = encode_batches(loaded.model, batch.tokens[ok], batch.lengths[ok], len(ok),
                           device_of(loaded), cond)
    ids = _decode_batch(loaded, mu, seed, cfg, True, cond)
    lengths = batch.lengths[ok]
    same = np.array([np.array_equal(row[: n - 1], tokens[1:n]) for row, tokens, n
                     in zip(ids, batch.tokens[ok], lengths, strict=True)], dtype=bool)
    for i, row in zip(ok[same], ids[same], strict=True):
        out[i] = (loaded.vocab.to_selfies(row), pairs[i][1])
    for i, pair in zip(ok[~same], decode_ids(loaded.vocab, ids[~same]), strict=True):
        if pair[1]:
            out[i] = pair
    return out


def refine(loaded: LoadedModel, pairs: Sequence[tuple[str, str]], cfg: GenerateConfig,
           passes: int, seed: int = 0, condition: torch.Tensor | None = None
           ) -> list[tuple[str, str]]:
    """``passes`` refinement passes (``_refine_pass``). A molecule a pass leaves as it was is a
    fixed point (the next pass would write it back again), so each pass takes only the
    molecules the last one changed."""
    out = list(pairs)
    moving = np.arange(len(out))
    for _ in range(passes):
        if not len(moving):
            break
        cond = None if condition is None else condition[torch.from_numpy(moving)]
        new = _refine_pass(loaded, [out[i] for i in moving], cfg, seed, cond)
        changed = np.array([new[j][1] != out[i][1] for j, i in enumerate(moving)], dtype=bool)
        for j, i in enumerate(moving):
            out[i] = new[j]
        moving = moving[changed]
    return out


def uses_ring_grammar(loaded: LoadedModel, cfg: GenerateConfig) -> bool:
    """``cfg.ring_grammar``, where None means: when the model stores its ring sizes."""
    return bool(loaded.ring_sizes) if cfg.ring_grammar is None else cfg.ring_grammar


@torch.no_grad()
def decode_latent(loaded: LoadedModel, z: torch.Tensor, cfg: GenerateConfig | None = None,
                  greedy: bool = True, seed: int = 0, condition: torch.Tensor | None = None
                  ) -> list[tuple[str, str]]:
    """Decode latent points (N, Z) to (SELFIES, canonical SMILES or ''); greedy by default
    (``condition``: a conditional model's condition input (N, C))."""
    cfg = cfg or GenerateConfig()
    out: list[tuple[str, str]] = []
    for i in range(0, len(z), cfg.batch_size):
        c = None if condition is None else condition[i : i + cfg.batch_size]
        ids = _decode_batch(loaded, z[i : i + cfg.batch_size], seed + i, cfg, greedy, c)
        out.extend(decode_ids(loaded.vocab, ids))
    return out


# --------------------------------------------------------------------------- prior sampling

_WORKER_MODEL: LoadedModel | None = None  # a forked worker's, set by the pool's initializer


def _start_worker(loaded: LoadedModel) -> None:
    global _WORKER_MODEL
    _WORKER_MODEL = loaded
    torch.set_num_threads(1)  # in the worker process: both cores busy, no oversubscription


@torch.no_grad()
def _sample_chunk(job: tuple, loaded: LoadedModel | None = None) -> list[tuple[str, str]]:
    """One batch of prior samples -> (SELFIES, canonical SMILES or '') pairs; in a worker
    process, with the model it was handed at fork and one torch thread."""
    loaded = loaded or _WORKER_MODEL
    _, seed, cfg, _, cond = job
    passes = uses_refine(loaded, cfg)  # a sampler's weights are refinement distilled: not both
    pairs = decode_ids(loaded.vocab, _decode_batch(loaded, *job, sampling=not passes))
    return refine(loaded, pairs, cfg, passes, seed, cond)


class _Ready:
    """A batch computed here, waiting in line with the workers' results."""

    def __init__(self, pairs: list[tuple[str, str]]):
        self.pairs = pairs

    def get(self) -> list[tuple[str, str]]:
        return self.pairs


class _Collector:
    """Sampled pairs in order; with ``unique``, only the first of each valid molecule."""

    def __init__(self, unique: bool, progress: Callable[[int], None] | None, n: int,
                 draws: int = 1):
        self.unique, self.progress, self.n, self.draws = unique, progress, n, draws
        self.reported = 0  # molecules returned so far, as progress counts them
        self.pairs: list[tuple[str, str]] = []
        self.seen: set[str] = set()
        self.asked: list[dict[str, np.ndarray]] = []  # per batch: the values asked for
        self.kept: list[int] = []  # per pair: its index among all draws
        self.taken = 0  # draws taken so far

    def asked_column(self, name: str) -> np.ndarray:
        """The value asked for each kept pair (a conditional sample)."""
        return np.concatenate([a[name] for a in self.asked])[np.asarray(self.kept, dtype=int)]

    def take(self, batch: list[tuple[str, str]]) -> None:
        start = self.taken
        for i, (sel, smi) in enumerate(batch):
            if self.unique:
                if not smi or smi in self.seen:
                    continue
                self.seen.add(smi)
            self.pairs.append((sel, smi))
            self.kept.append(start + i)
        self.taken = start + len(batch)
        if self.progress:  # molecules returned (with unique: kept, up to n), of draws pairs each
            done = (min(len(self.pairs), self.n) if self.unique else self.taken) // self.draws
            self.progress(done - self.reported)
            self.reported = done


@torch.no_grad()
def sample(loaded: LoadedModel, cfg: GenerateConfig | None = None, *, workers: int | None = None,
           progress: Callable[[int], None] | None = None, part: tuple[int, int] = (0, 1),
           code_seed: int | None = None, max_rounds: int = 50, **overrides) -> pd.DataFrame:
    """``cfg.num_samples`` molecules from the prior (same seed and settings, same molecules).

    ``cfg`` is a GenerateConfig; keyword ``overrides`` of its fields (``num_samples=100,
    seed=3``) are validated like a config file. ``cfg.prior``: "normal" draws z ~ N(0, I);
    "posterior" draws from the training codes stored in the checkpoint (see
    ``LatentPrior``, also for ``prior_width``, ``part`` and ``code_seed``: shards of one
    sample); "auto" uses them when present.

    With ``unique``, keeps sampling until n unique valid molecules (at most ``max_rounds``
    x n draws). Decoding to SMILES runs in worker processes while the model samples the
    next batch. Columns: smiles, selfies, valid, source, seed, step."""
    check_loaded(loaded, "sample")
    cfg = settings(cfg, **overrides)
    if uses_ring_grammar(loaded, cfg):
        ring_constraint(loaded)  # fails here, with its one line, if the model cannot
    targets = request(loaded, cfg.condition)
    draws = uses_draws(cfg, targets)
    gen = torch.Generator(device=device_of(loaded)).manual_seed(cfg.seed)
    latent = LatentPrior(loaded, cfg.prior, gen, part, code_seed, uses_width(loaded, cfg),
                         targets, cfg.condition_codes)
    n, workers = cfg.num_samples * draws, parallel.resolve_workers(workers)
    out = _Collector(cfg.unique, progress, n, draws)
    drawn = _draw(loaded, cfg.model_copy(update={"num_samples": n}), latent, gen, out, workers,
                  max_rounds)
    if cfg.unique and len(out.pairs) < n:
        logger.warning("only %d unique valid molecules after %d draws", len(out.pairs), drawn)
    keep = (np.arange(min(n, len(out.pairs))) if draws == 1 else
            _closest(loaded, out.pairs[:n], targets, draws, workers))
    pairs = [out.pairs[i] for i in keep]
    asked = {f"target_{k}": out.asked_column(k)[keep] for k in targets}
    return _frame(pairs, "prior" if not targets else "conditional", seed=cfg.seed,
                  step=np.arange(len(pairs)), **asked)


def uses_draws(cfg: GenerateConfig, targets: dict[str, tuple[float, float]]) -> int:
    """``cfg.condition_draws`` for a request ``targets``, where None means: 4 when RDKit
    computes every requested property, else 1; 1 without a request."""
    columns = ", ".join(sorted(set(targets) - set(chem.PROPERTIES)))  # no RDKit property
    if not targets or cfg.condition_draws is None:
        return 4 if targets and not columns else 1
    if cfg.condition_draws > 1 and columns:
        raise GenerationError(f"generate.condition_draws = {cfg.condition_draws} keeps the decoded "
                              "molecule nearest the request by the properties RDKit computes; "
                              f"{columns} is a data column: set generate.condition_draws = 1")
    return cfg.condition_draws


def _closest(loaded: LoadedModel, pairs: Sequence[tuple[str, str]],
             targets: dict[str, tuple[float, float]], draws: int, workers: int) -> np.ndarray:
    """Per run of ``draws`` pairs, the index of the molecule to keep: the nearest to the
    request by its RDKit properties (``conditions.distance``) of the new hits (within
    tolerance, ``conditions.hits``; not a training molecule, not kept from an earlier run),
    else of the hits, else of the new ones, else of all (the nearest alone keeps the few
    training molecules that sit on a request, over and over)."""
    smiles = [smi for _, smi in pairs]
    rows = chem.score_smiles(smiles, filters=(), property_names=list(targets), workers=workers)
    values = {k: np.array([r.get(k, np.nan) for r in rows], dtype=float) for k in targets}
    d, hit = distance(targets, values, loaded.conditions), hits(targets, values)
    novel = loaded.is_novel(smiles) & (d < np.inf)
    keep, kept = np.empty(-(-len(d) // draws), dtype=int), set()
    for g in range(len(keep)):
        run = range(g * draws, min(len(d), (g + 1) * draws))
        keep[g] = min(run, key=lambda i: (not hit[i], not novel[i] or smiles[i] in kept, d[i]))
        kept.add(smiles[keep[g]])
    return keep


def _draw(loaded: LoadedModel, cfg: GenerateConfig, latent: LatentPrior, gen: torch.Generator,
          out: _Collector, workers: int, max_rounds: int) -> int:
    """Sample batches into ``out`` until it holds ``cfg.num_samples``; returns the draws.

    On CPU with fork, each worker samples and decodes whole batches with one torch thread
    (both cores busy, no oversubscription); otherwise (GPU, spawn) the model samples here and
    the workers only decode."""
    n, device = cfg.num_samples, device_of(loaded)
    use_pool = workers > 1 and n > cfg.batch_size
    in_workers = use_pool and device.type == "cpu" and parallel.START_METHOD == "fork"
    drawn = 0
    with contextlib.ExitStack() as stack:
        init = (_start_worker, (loaded,)) if in_workers else (None, ())
        pool = stack.enter_context(parallel.pool(workers, *init)) if use_pool else None
        pending: list[list] = []
        while len(out.pairs) < n and drawn < n * (max_rounds if cfg.unique else 1):
            # Each batch gets its latent points and its own sampling seed from the seeded
            # stream, in order, and batch sizes depend on n only: the molecules are the same
            # with or without worker processes, whichever worker samples which batch.
            k = min(cfg.batch_size, n) if cfg.unique else min(cfg.batch_size, n - drawn)
            batch_seed = int(torch.randint(0, 2**62, (1,), generator=gen, device=device))
            z = latent(k).cpu()
            cond, asked = latent.condition(k)
            out.asked.append(asked)
            job = (z, batch_seed, cfg, None, cond)
            drawn += k
            if pool is None:
                out.take(_sample_chunk(job, loaded))
                continue
            if in_workers:
                pending.append([pool.apply_async(_sample_chunk, (job,))])
            elif uses_refine(loaded, cfg):  # refinement needs the model: here, in order
                pending.append([_Ready(_sample_chunk(job, loaded))])
            else:
                ids = _decode_batch(loaded, *job, sampling=True)
                half = (len(ids) + 1) // 2
                pending.append([pool.apply_async(_decode_chunk, (loaded.vocab.to_list(), rows))
                                for rows in (ids[:half], ids[half:]) if len(rows)])
            # Bounded look-ahead; with unique, counts lag by the batches in flight, and the
            # extra molecules are cut by the caller, so the result does not depend on the lag.
            if len(pending) > (workers if cfg.unique else 2 * workers):
                for r in pending.pop(0):
                    out.take(r.get())
        for parts in pending:
            for r in parts:
                out.take(r.get())
    return drawn


def conditional(loaded: LoadedModel, targets: Sequence[dict], cfg: GenerateConfig | None = None,
                num_samples: int = 1000, workers: int | None = None,
                progress: Callable[[int], None] | None = None) -> pd.DataFrame:
    """``num_samples`` molecules for each request in ``targets`` (every request checked
    first), with ``request`` (its text) and ``request_id`` columns; the sampling settings
    of ``cfg``, each request with its own seed."""
    checked = [request(loaded, t) for t in targets]
    if not checked:
        raise GenerationError("no conditional targets given")
    base = settings(cfg)
    parts = []
    for i, (target, ranges) in enumerate(zip(targets, checked, strict=True)):
        df = sample(loaded, base, workers=workers, progress=progress, num_samples=num_samples,
                    seed=base.seed + i, condition=target)
        parts.append(df.assign(request=describe(ranges), request_id=i))
    return pd.concat(parts, ignore_index=True)


def request(loaded: LoadedModel, condition: dict) -> dict[str, tuple[float, float]]:
    """A validated request ({name: (low, high)}) for ``loaded``; {} when nothing is asked."""
    if not condition:
        return {}
    if loaded.conditions is None:
        raise GenerationError(f"{loaded.path or 'this model'} is not a conditional model (it was "
                              "trained without model.conditions); sample without a condition")
    return loaded.conditions.check(condition)


# --------------------------------------------------------------------------- reconstruct


@torch.no_grad()
def reconstruct(loaded: LoadedModel, smiles: Sequence[str], batch_size: int = 1000,
                max_length: int = 100, progress: Callable[[int], None] | None = None,
                code_only: bool = False) -> pd.DataFrame:
    """Greedy decode of each molecule's latent mean, in input order; a conditional model's
    encoder and decoder are given each molecule's own properties (``latent.own_condition``;
    ``code_only``: nothing but the code, as an unconditional model decodes).

    Columns: input, reconstructed (canonical, '' when the input cannot be encoded),
    exact_match (canonical SMILES equal), error. One SMILES string is one molecule."""
    smiles = [smiles] if isinstance(smiles, str) else list(smiles)
    batch = tokenize_smiles(loaded.vocab, smiles, strict=False)
    cfg = settings(max_length=max_length, batch_size=batch_size)
    own = None if code_only else own_condition(loaded, batch.canonical)
    recon: list[str] = []
    for start in range(0, len(batch.tokens), batch_size):
        part = slice(start, start + batch_size)
        c = None if own is None else own[part]
        mu, _ = encode_batches(loaded.model, batch.tokens[part], batch.lengths[part], batch_size,
                               device_of(loaded), c)
        recon.extend(smi for _, smi in decode_latent(loaded, mu, cfg, condition=c))
        if progress:
            progress(len(mu))
    df = pd.DataFrame({"input": list(smiles), "reconstructed": recon})
    # longer than the decoder writes: encoded, but never written back whole
    long = batch.ok & (batch.lengths - 2 > max_length)
    bad = ~batch.ok | long
    df.loc[bad, "reconstructed"] = ""
    df["exact_match"] = [(not b) and c == r
                         for b, c, r in zip(bad, batch.canonical, recon, strict=True)]
    df["error"] = [e or (f"{n - 2} SELFIES tokens, longer than the {max_length} the decoder "
                         "writes" if too else "")
                   for e, n, too in zip(batch.errors, batch.lengths, long, strict=True)]
    df.attrs["own_condition"] = own is not None
    return df
