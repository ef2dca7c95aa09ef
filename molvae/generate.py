"""Sample, interpolate, explore neighbours, reconstruct and encode with a trained model.

Every function returns a pandas DataFrame with one row per molecule; ``annotate`` adds
uniqueness, novelty, every property, every filter and the desirability score.
"""

from __future__ import annotations

import contextlib
import logging
import math
from collections.abc import Callable, Sequence

import numpy as np
import pandas as pd
import torch

from . import chem
from .config import ScoreConfig
from .data import EncodedDataset
from .model import kl_divergence, reconstruction_loss
from .train import LoadedModel, prior_codes
from .vocab import PAD_ID, Vocab, VocabError, selfies_to_smiles, smiles_to_selfies

logger = logging.getLogger(__name__)


class GenerationError(ValueError):
    """Bad generation arguments (n <= 0, temperature <= 0, an invalid seed molecule...)."""


# --------------------------------------------------------------------------- decoding


def _decode_chunk(args) -> list[tuple[str, str]]:
    tokens, rows = args
    vocab = Vocab(tokens)
    out = []
    for row in rows:
        sel = vocab.decode(row)
        can = chem.canonical_smiles(selfies_to_smiles(sel)) if sel else None
        out.append((sel, can or ""))
    return out


def decode_ids(vocab: Vocab, ids: np.ndarray) -> list[tuple[str, str]]:
    """Token id rows -> (SELFIES, canonical SMILES or '') pairs."""
    return _decode_chunk((vocab.to_list(), ids))


def _frame(pairs: Sequence[tuple[str, str]], source: str, **cols) -> pd.DataFrame:
    df = pd.DataFrame(pairs, columns=["selfies", "smiles"])
    df.insert(0, "valid", df["smiles"] != "")
    df["source"] = source
    for k, v in cols.items():
        df[k] = v
    return df[["smiles", "selfies", "valid", "source", *cols]]


def _device(lm: LoadedModel) -> torch.device:
    return next(lm.model.parameters()).device


def _check_sampling(temperature: float, max_length: int) -> None:
    if not temperature > 0:
        raise GenerationError(f"temperature must be > 0, got {temperature}")
    if max_length < 1:
        raise GenerationError(f"max_length must be >= 1, got {max_length}")


@torch.no_grad()
def decode_latent(lm: LoadedModel, z: torch.Tensor, temperature: float = 1.0, greedy: bool = True,
                  max_length: int = 100, generator: torch.Generator | None = None,
                  batch_size: int = 1000) -> list[tuple[str, str]]:
    """Decode latent points (N, Z) to (SELFIES, canonical SMILES or '')."""
    _check_sampling(temperature, max_length)
    out: list[tuple[str, str]] = []
    for i in range(0, len(z), batch_size):
        zb = z[i : i + batch_size].to(_device(lm))
        ids = lm.model.decoder.generate(zb, max_length, temperature, greedy, generator,
                                        lm.vocab.structural_ids())
        out.extend(decode_ids(lm.vocab, ids.cpu().numpy()))
    return out


# --------------------------------------------------------------------------- prior sampling

PRIORS = ("auto", "normal", "posterior")


def _check_width(width: float) -> None:
    if not 0 < width < math.inf:
        raise GenerationError(f"prior width must be > 0, got {width}")


def resolve_prior(lm: LoadedModel, prior: str) -> str:
    """"auto" -> "posterior" when the checkpoint stores posterior codes, else "normal"."""
    if prior not in PRIORS:
        raise GenerationError(f"prior must be one of {', '.join(PRIORS)}, got {prior!r}")
    if prior == "posterior" and lm.prior is None:
        raise GenerationError(f"{lm.path or 'this model'} stores no posterior codes; add them "
                              "with `molvae prior TRAIN_FILE --model MODEL` or sample with prior 'normal'")
    if prior == "auto":
        return "posterior" if lm.prior is not None else "normal"
    return prior


class LatentPrior:
    """Seeded draws of z: N(0, I), or the stored aggregate posterior (pick a training
    molecule's code, then z ~ q(z|x) = N(mu, exp(logvar))). Codes are taken without
    replacement, one shuffled pass after another: no code repeats within a pass.

    ``width`` scales every posterior's standard deviation (None: the width stored with the
    codes, 1 unless set by ``molvae prior --width``): wider draws copy fewer training
    molecules, narrower ones stay closer to the data.

    ``part=(i, k)``: shard i of k takes every k-th code of passes shuffled by ``code_seed``,
    so shards sampled with different seeds still share no code.
    """

    def __init__(self, lm: LoadedModel, prior: str, generator: torch.Generator,
                 part: tuple[int, int] = (0, 1), code_seed: int | None = None,
                 width: float | None = None):
        if width is not None:
            _check_width(width)
        self.kind = resolve_prior(lm, prior)
        self.part = part
        self.code_gen = (generator if code_seed is None else
                         torch.Generator(device=_device(lm)).manual_seed(code_seed))
        self.gen = generator
        self.size = lm.model.latent_size
        self.device = _device(lm)
        if self.kind == "posterior":
            self.mu = lm.prior["mu"].to(self.device)
            width = lm.prior.get("width", 1.0) if width is None else width
            self.std = (width * torch.exp(0.5 * lm.prior["logvar"])).to(self.device)
            self.order = torch.empty(0, dtype=torch.long, device=self.device)

    def __call__(self, k: int) -> torch.Tensor:
        eps = torch.randn(k, self.size, generator=self.gen, device=self.device)
        if self.kind == "normal":
            return eps
        while len(self.order) < k:
            perm = torch.randperm(len(self.mu), generator=self.code_gen, device=self.device)
            self.order = torch.cat([self.order, perm[self.part[0] :: self.part[1]]])
        idx, self.order = self.order[:k], self.order[k:]
        return self.mu[idx] + self.std[idx] * eps


def fit_prior(lm: LoadedModel, smiles: Sequence[str], n: int = 16384, seed: int = 0,
              batch_size: int = 1000, width: float = 1.0) -> dict:
    """Posterior codes of a seeded random ``n`` of ``smiles`` (the model's training data),
    for ``prior="posterior"``, with the kernel ``width`` sampling uses by default (see
    ``LatentPrior``); molecules the model cannot encode are skipped."""
    if n < 1:
        raise GenerationError(f"number of codes must be >= 1, got {n}")
    _check_width(width)
    order = np.random.default_rng(seed).permutation(len(smiles))
    rows, canon = [], []
    for start in range(0, len(order), max(n, 1000)):  # encode only what is needed
        pick = [smiles[i] for i in order[start : start + max(n, 1000)]]
        tokens, lengths, can, errors = encode_smiles(lm, pick, strict=False)
        rows += [(t[:ln], ln) for t, ln, e in zip(tokens, lengths, errors, strict=True) if e is None]
        canon += [c for c, e in zip(can, errors, strict=True) if e is None]
        if len(rows) >= n:
            break
    if not rows:
        raise GenerationError("none of the molecules can be encoded by this model")
    rows, canon = rows[:n], canon[:n]
    tokens = np.full((len(rows), max(ln for _, ln in rows)), PAD_ID, dtype=np.int64)
    for i, (t, ln) in enumerate(rows):
        tokens[i, :ln] = t
    ds = EncodedDataset(canon, tokens, np.array([ln for _, ln in rows]), lm.vocab)
    return {**prior_codes(lm.model, ds, n, batch_size, _device(lm), seed), "width": float(width)}


_WORKER_MODEL: LoadedModel | None = None  # a sampling worker's model (see _start_worker)


def _start_worker(lm: LoadedModel) -> None:
    global _WORKER_MODEL
    _WORKER_MODEL = lm
    torch.set_num_threads(1)


def _generate(lm: LoadedModel, z: torch.Tensor, seed: int, temperature: float, greedy: bool,
              max_length: int, banned: Sequence[int]) -> np.ndarray:
    device = _device(lm)
    gen = torch.Generator(device=device).manual_seed(seed)
    return lm.model.decoder.generate(z.to(device), max_length, temperature, greedy, gen,
                                     banned).cpu().numpy()


@torch.no_grad()
def _sample_chunk(job: tuple, lm: LoadedModel | None = None) -> list[tuple[str, str]]:
    """One batch of prior samples -> (SELFIES, canonical SMILES or '') pairs; in a worker
    process, with the model it was handed at fork and one torch thread."""
    lm = lm or _WORKER_MODEL
    return decode_ids(lm.vocab, _generate(lm, *job))


@torch.no_grad()
def sample(
    lm: LoadedModel,
    n: int,
    batch_size: int = 1000,
    temperature: float = 1.0,
    greedy: bool = False,
    seed: int = 0,
    max_length: int = 100,
    unique: bool = False,
    workers: int | None = None,
    progress: Callable[[int], None] | None = None,
    max_rounds: int = 50,
    prior: str = "auto",
    part: tuple[int, int] = (0, 1),
    code_seed: int | None = None,
    prior_width: float | None = None,
) -> pd.DataFrame:
    """``n`` molecules from the prior (same seed and settings, same molecules).

    ``prior``: "normal" draws z ~ N(0, I); "posterior" draws from the training codes
    stored in the checkpoint (see ``LatentPrior``, also for ``prior_width``, ``part`` and
    ``code_seed``: shards of one sample); "auto" uses them when present.

    With ``unique``, keeps sampling until ``n`` unique valid molecules (at most
    ``max_rounds`` x n draws). Decoding to SMILES runs in worker processes while the
    model samples the next batch. Columns: smiles, selfies, valid, source, seed, step.
    """
    if n < 1:
        raise GenerationError(f"number of samples must be >= 1, got {n}")
    if batch_size < 1:
        raise GenerationError(f"batch size must be >= 1, got {batch_size}")
    _check_sampling(temperature, max_length)
    device = _device(lm)
    gen = torch.Generator(device=device).manual_seed(seed)
    latent = LatentPrior(lm, prior, gen, part, code_seed, prior_width)
    banned = lm.vocab.structural_ids()
    workers = 1 if chem.default_workers() == 1 else workers or chem.default_workers()
    tokens = lm.vocab.to_list()
    pairs: list[tuple[str, str]] = []
    seen: set[str] = set()
    n_unique = 0
    drawn = 0

    def take(batch: list[tuple[str, str]]) -> None:
        nonlocal n_unique
        for sel, smi in batch:
            if unique:
                if not smi or smi in seen:
                    continue
                seen.add(smi)
            pairs.append((sel, smi))
            n_unique += 1
        if progress:
            progress(len(batch))

    use_pool = workers > 1 and n > batch_size
    # On CPU with fork, each worker samples and decodes whole batches with one torch thread
    # (both cores busy, no oversubscription); otherwise (GPU, spawn) the model samples here
    # and the workers only decode.
    in_workers = use_pool and device.type == "cpu" and chem.START_METHOD == "fork"
    with contextlib.ExitStack() as stack:
        init = (_start_worker, (lm,)) if in_workers else (None, ())
        pool = stack.enter_context(chem.pool(workers, *init)) if use_pool else None
        pending: list[list] = []
        while n_unique < n and drawn < n * (max_rounds if unique else 1):
            # Each batch gets its latent points and its own sampling seed from the seeded
            # stream, in order, and batch sizes depend on n only: the molecules are the same
            # with or without worker processes, whichever worker samples which batch.
            k = min(batch_size, n - drawn) if not unique else batch_size
            batch_seed = int(torch.randint(0, 2**62, (1,), generator=gen, device=device))
            job = (latent(k).cpu(), batch_seed, temperature, greedy, max_length, banned)
            drawn += k
            if pool is None:
                take(_sample_chunk(job, lm))
                continue
            if in_workers:
                pending.append([pool.apply_async(_sample_chunk, (job,))])
            else:
                ids = _generate(lm, *job)
                half = (len(ids) + 1) // 2
                pending.append([pool.apply_async(_decode_chunk, ((tokens, rows),))
                                for rows in (ids[:half], ids[half:]) if len(rows)])
            # Bounded look-ahead; with unique, counts lag by the batches in flight, and the
            # extra molecules are cut below, so the result does not depend on the lag.
            if len(pending) > (workers if unique else 2 * workers):
                for r in pending.pop(0):
                    take(r.get())
        for parts in pending:
            for r in parts:
                take(r.get())
    if unique and n_unique < n:
        logger.warning("only %d unique valid molecules after %d draws", n_unique, drawn)
    pairs = pairs[:n]
    return _frame(pairs, "prior", seed=seed, step=np.arange(len(pairs)))


# --------------------------------------------------------------------------- encoding


def encode_smiles(lm: LoadedModel, smiles: Sequence[str], strict: bool = True
                  ) -> tuple[np.ndarray, np.ndarray, list[str], list[str | None]]:
    """Token ids (N, L) padded, lengths, canonical SMILES, and an error per molecule.

    With ``strict`` (one molecule), an invalid SMILES or unknown tokens raise; otherwise
    such molecules get an error string and an all-<pad> row.
    """
    rows: list[list[int]] = []
    canon: list[str] = []
    errors: list[str | None] = []
    for s in smiles:
        can = chem.canonical_smiles(s)
        err = None
        ids: list[int] = []
        if can is None:
            err = f"not a valid molecule: {s!r}"
        else:
            sel = smiles_to_selfies(can)
            if sel is None:
                err = f"cannot encode {s!r} as SELFIES"
            else:
                try:
                    ids = lm.vocab.encode(sel, s)
                except VocabError as exc:
                    err = str(exc)
        if err and strict:
            raise GenerationError(err)
        rows.append(ids or [PAD_ID, PAD_ID])
        canon.append(can or "")
        errors.append(err)
    width = max(len(r) for r in rows) if rows else 2
    tokens = np.full((len(rows), width), PAD_ID, dtype=np.int64)
    for i, r in enumerate(rows):
        tokens[i, : len(r)] = r
    lengths = np.array([max(len(r), 2) for r in rows], dtype=np.int64)
    return tokens, lengths, canon, errors


@torch.no_grad()
def latent_means(lm: LoadedModel, smiles: Sequence[str], batch_size: int = 1000,
                 strict: bool = True) -> tuple[torch.Tensor, torch.Tensor, list[str | None]]:
    """mu and logvar (N, Z) of each molecule; rows of failed molecules are NaN."""
    tokens, lengths, _, errors = encode_smiles(lm, smiles, strict)
    dev = _device(lm)
    mus, lvs = [], []
    for i in range(0, len(tokens), batch_size):
        t = torch.from_numpy(tokens[i : i + batch_size]).to(dev)
        ln = torch.from_numpy(lengths[i : i + batch_size]).to(dev)
        mu, lv = lm.model.encode(t, ln)
        mus.append(mu.cpu())
        lvs.append(lv.cpu())
    mu = torch.cat(mus) if mus else torch.empty(0, lm.model.latent_size)
    lv = torch.cat(lvs) if lvs else torch.empty(0, lm.model.latent_size)
    bad = torch.tensor([e is not None for e in errors], dtype=torch.bool)
    if bad.any():
        mu[bad] = float("nan")
        lv[bad] = float("nan")
    return mu, lv, errors


@torch.no_grad()
def encode(lm: LoadedModel, smiles: Sequence[str], batch_size: int = 1000) -> pd.DataFrame:
    """Latent means and variances per molecule plus its ELBO (higher = more typical) and
    ``ood_score = -elbo`` for out-of-distribution screening. Bad molecules get an error."""
    tokens, lengths, canon, errors = encode_smiles(lm, smiles, strict=False)
    dev = _device(lm)
    mus, lvs, elbos = [], [], []
    for i in range(0, len(tokens), batch_size):
        t = torch.from_numpy(tokens[i : i + batch_size]).to(dev)
        ln = torch.from_numpy(lengths[i : i + batch_size]).to(dev)
        mu, lv = lm.model.encode(t, ln)
        recon = reconstruction_loss(lm.model.decoder(mu, t), t)
        elbos.append(-(recon + kl_divergence(mu, lv).sum(1)).cpu())
        mus.append(mu.cpu())
        lvs.append(lv.cpu())
    mu = torch.cat(mus).numpy()
    var = torch.cat(lvs).exp().numpy()
    elbo = torch.cat(elbos).numpy()
    df = pd.DataFrame({"input": list(smiles), "smiles": canon,
                       "error": [e or "" for e in errors]})
    bad = np.array([e is not None for e in errors])
    elbo[bad] = np.nan
    mu[bad] = np.nan
    var[bad] = np.nan
    df["elbo"] = elbo
    df["ood_score"] = -elbo
    latent = pd.DataFrame(np.concatenate([mu, var], axis=1),
                          columns=[f"mu_{i}" for i in range(mu.shape[1])]
                          + [f"var_{i}" for i in range(var.shape[1])])
    return pd.concat([df, latent], axis=1)


# --------------------------------------------------------------------------- reconstruct


@torch.no_grad()
def reconstruct(lm: LoadedModel, smiles: Sequence[str], batch_size: int = 1000,
                max_length: int = 100, progress: Callable[[int], None] | None = None
                ) -> pd.DataFrame:
    """Greedy decode of each molecule's latent mean, in input order.

    Columns: input, reconstructed (canonical, '' when the input cannot be encoded),
    exact_match (canonical SMILES equal), error.
    """
    tokens, lengths, canon, errors = encode_smiles(lm, smiles, strict=False)
    dev = _device(lm)
    recon: list[str] = []
    for i in range(0, len(tokens), batch_size):
        t = torch.from_numpy(tokens[i : i + batch_size]).to(dev)
        ln = torch.from_numpy(lengths[i : i + batch_size]).to(dev)
        mu, _ = lm.model.encode(t, ln)
        ids = lm.model.decoder.generate(mu, max_length, greedy=True,
                                        banned_first=lm.vocab.structural_ids()).cpu().numpy()
        recon.extend(smi for _, smi in decode_ids(lm.vocab, ids))
        if progress:
            progress(len(t))
    df = pd.DataFrame({"input": list(smiles), "reconstructed": recon})
    bad = np.array([e is not None for e in errors], dtype=bool)
    df.loc[bad, "reconstructed"] = ""
    df["exact_match"] = [(not b) and c == r for b, c, r in zip(bad, canon, recon, strict=True)]
    df["error"] = [e or "" for e in errors]
    return df


# --------------------------------------------------------------------------- latent walks


def slerp(a: torch.Tensor, b: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """Spherical interpolation of (Z,) vectors at fractions t (K,) -> (K, Z)."""
    an, bn = a / a.norm(), b / b.norm()
    omega = torch.arccos((an * bn).sum().clamp(-1 + 1e-7, 1 - 1e-7))
    so = torch.sin(omega)
    if so.abs() < 1e-6:
        return (1 - t)[:, None] * a + t[:, None] * b
    return (torch.sin((1 - t) * omega) / so)[:, None] * a + (torch.sin(t * omega) / so)[:, None] * b


def interpolate(lm: LoadedModel, smiles: Sequence[str], steps: int = 10,
                method: str = "linear", max_length: int = 100) -> pd.DataFrame:
    """Walk the latent path through 2+ molecules (``steps`` points per segment, ends
    included) and decode each point greedily. Columns add segment, step, t, and the
    similarity to the segment's start and end molecules."""
    if len(smiles) < 2:
        raise GenerationError("interpolation needs at least two molecules")
    if steps < 2:
        raise GenerationError(f"steps must be >= 2, got {steps}")
    if method not in ("linear", "slerp"):
        raise GenerationError(f"unknown interpolation method {method!r} (linear, slerp)")
    mu, _, _ = latent_means(lm, smiles)
    t = torch.linspace(0, 1, steps)
    frames = []
    for k in range(len(smiles) - 1):
        a, b = mu[k], mu[k + 1]
        z = (1 - t)[:, None] * a + t[:, None] * b if method == "linear" else slerp(a, b, t)
        pairs = decode_latent(lm, z, greedy=True, max_length=max_length)
        df = _frame(pairs, "interpolation", segment=k, step=np.arange(steps), t=t.numpy())
        df["sim_start"] = chem.bulk_tanimoto(smiles[k], df["smiles"].tolist())
        df["sim_end"] = chem.bulk_tanimoto(smiles[k + 1], df["smiles"].tolist())
        frames.append(df)
    return pd.concat(frames, ignore_index=True)


def neighbors(lm: LoadedModel, smiles: str, radii: Sequence[float] = (0.1, 0.25, 0.5),
              per_radius: int = 20, seed: int = 0, max_length: int = 100) -> pd.DataFrame:
    """Analogues of one molecule: decode z = mu + r * eps, eps ~ N(0, I), for each radius r
    (in prior standard deviations), with Tanimoto similarity to the seed."""
    if per_radius < 1:
        raise GenerationError(f"molecules per radius must be >= 1, got {per_radius}")
    if not radii or any(r < 0 for r in radii):
        raise GenerationError(f"radii must be a non-empty list of values >= 0, got {list(radii)}")
    mu, _, _ = latent_means(lm, [smiles])
    gen = torch.Generator().manual_seed(seed)
    frames = []
    for r in radii:
        eps = torch.randn(per_radius, mu.shape[1], generator=gen)
        pairs = decode_latent(lm, mu + r * eps, greedy=True, max_length=max_length)
        frames.append(_frame(pairs, "neighbors", seed=seed, radius=float(r),
                             step=np.arange(per_radius)))
    df = pd.concat(frames, ignore_index=True)
    df["similarity"] = chem.bulk_tanimoto(smiles, df["smiles"].tolist())
    return df


# --------------------------------------------------------------------------- annotation


def annotate(df: pd.DataFrame, score_cfg: ScoreConfig, lm: LoadedModel | None = None,
             workers: int | None = None, progress: Callable[[int], None] | None = None
             ) -> pd.DataFrame:
    """Add unique, novel (vs the model's training set), every property, every filter
    (``pass_*``), ``pass_all`` and the desirability ``score``. Input order kept."""
    rows = chem.score_smiles(df["smiles"].tolist(), score_cfg.filters, score_cfg.windows,
                             workers=workers or score_cfg.workers, progress=progress)
    scored = pd.DataFrame(rows).drop(columns=["smiles", "valid"])
    out = pd.concat([df.reset_index(drop=True), scored], axis=1)
    valid = out["valid"].to_numpy(bool)
    first = ~out["smiles"].duplicated()
    out["unique"] = valid & first.to_numpy()
    novel = np.zeros(len(out), dtype=bool)
    if lm is not None and valid.any():
        novel[valid] = lm.is_novel(out.loc[valid, "smiles"].tolist())
    elif valid.any():
        novel[valid] = True
    out["novel"] = novel
    if "reference" in score_cfg.filters and score_cfg.reference_smiles:
        out["reference_similarity"] = max_similarity(out["smiles"].tolist(),
                                                     score_cfg.reference_smiles)
        out["pass_reference"] = out["reference_similarity"] >= score_cfg.min_reference_similarity
    if "novelty" in score_cfg.filters:
        out["pass_novelty"] = out["novel"]
    if "uniqueness" in score_cfg.filters:
        out["pass_uniqueness"] = out["unique"]
    pass_cols = [c for c in out.columns if c.startswith("pass_") and c != "pass_all"]
    out["pass_all"] = valid & out[pass_cols].all(axis=1).to_numpy() if pass_cols else valid
    props = [p for p in chem.PROPERTIES if p in out.columns]
    out["score"] = [chem.composite_score(dict(zip(props, r, strict=True)), score_cfg.desirability)
                    if v else 0.0 for r, v in zip(out[props].to_numpy(), valid, strict=True)]
    return out


def mark_unique(df: pd.DataFrame) -> pd.DataFrame:
    """Recompute ``unique`` (and its filter) over a whole table, e.g. after joining shards."""
    df = df.reset_index(drop=True)
    df["unique"] = df["valid"].to_numpy(bool) & (~df["smiles"].duplicated()).to_numpy()
    if "pass_uniqueness" in df:
        df["pass_uniqueness"] = df["unique"]
    pass_cols = [c for c in df.columns if c.startswith("pass_") and c != "pass_all"]
    if "pass_all" in df:
        df["pass_all"] = df["valid"] & df[pass_cols].all(axis=1)
    return df


def max_similarity(smiles: Sequence[str], reference: Sequence[str]) -> list[float]:
    """Highest Tanimoto similarity of each molecule to any reference molecule."""
    from rdkit import DataStructs

    ref_fps = [chem.fingerprint(m) for m in map(chem.to_mol, reference) if m is not None]
    out = []
    for s in smiles:
        m = chem.to_mol(s)
        if m is None or not ref_fps:
            out.append(0.0)
            continue
        out.append(max(DataStructs.BulkTanimotoSimilarity(chem.fingerprint(m), ref_fps)))
    return out


def rank(df: pd.DataFrame, by: str = "score", require_pass: bool = False) -> pd.DataFrame:
    """Valid unique molecules sorted by ``by`` (descending), optionally only those passing
    every filter."""
    keep = df["valid"] & df["unique"]
    if require_pass and "pass_all" in df:
        keep &= df["pass_all"]
    return df[keep].sort_values(by, ascending=False, kind="stable").reset_index(drop=True)
