"""The latent space: molecules to codes, the sampling prior, interpolation geometry.

A code is the posterior q(z|x) = N(mu, exp(logvar)) of one molecule; Z = latent size.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import numpy as np
import pandas as pd
import torch

from .checkpoint import LoadedModel
from .data import EncodedDataset, collate, sequential_batches
from .errors import GenerationError
from .grammar import allowed_ring_sizes
from .model import SelfiesVAE, kl_divergence, reconstruction_loss
from .vocab import PAD_ID, tokenize_smiles


def check_loaded(loaded: object, where: str) -> None:
    """``loaded`` must be a loaded model: a path or a checkpoint dict there is one line's
    fix, not an AttributeError deep inside."""
    if not (hasattr(loaded, "model") and hasattr(loaded, "vocab")):
        raise GenerationError(f"{where} takes a loaded model (molvae.load_model(path)), not "
                              f"{type(loaded).__name__}")


def device_of(loaded: LoadedModel) -> torch.device:
    return next(loaded.model.parameters()).device


# Rows per encoder batch on the CPU: molecules sorted by length and encoded in batches of
# this many, each trimmed to its longest, so the GRU runs ~the mean length instead of the
# longest molecule's (1.5x faster on 1,000 MOSES molecules at 128 than one padded batch;
# the same numbers: a row's result does not depend on its batch).
CPU_BUCKET = 128


@torch.no_grad()
def encode_batches(model: SelfiesVAE, tokens: np.ndarray, lengths: np.ndarray, batch_size: int,
                   device: torch.device, condition: torch.Tensor | None = None
                   ) -> tuple[torch.Tensor, torch.Tensor]:
    """The one encoding loop: tokens (N, L), lengths (N,) (and a conditional model's
    condition input (N, C)) -> mu, logvar (N, Z) on the CPU, in input order; batches of
    similar lengths (at most ``batch_size``, on the CPU ``CPU_BUCKET``)."""
    z = model.latent_size
    mu, lv = torch.empty(len(tokens), z), torch.empty(len(tokens), z)
    lengths = np.asarray(lengths, dtype=np.int64)
    size = min(batch_size, CPU_BUCKET) if device.type == "cpu" else batch_size
    order = np.argsort(lengths, kind="stable")
    for start in range(0, len(order), size):
        idx = order[start : start + size]
        width = int(lengths[idx].max())
        t = torch.from_numpy(np.asarray(tokens[idx, :width], dtype=np.int64)).to(device)
        rows = torch.from_numpy(idx)
        c = None if condition is None else condition[rows].to(device)
        m, v = model.encode(t, torch.from_numpy(lengths[idx]).to(device), c)
        mu[rows], lv[rows] = m.float().cpu(), v.float().cpu()
    return mu, lv


@torch.no_grad()
def codes(loaded: LoadedModel, smiles: Sequence[str], batch_size: int = 1000,
          strict: bool = True, condition: torch.Tensor | None = None
          ) -> tuple[torch.Tensor, torch.Tensor, list[str | None]]:
    """mu and logvar (N, Z) of each molecule (with a conditional model's condition input
    (N, C)) and its error; rows of failed molecules are NaN. One string is one molecule."""
    batch = tokenize_smiles(loaded.vocab, [smiles] if isinstance(smiles, str) else smiles, strict)
    mu, lv = encode_batches(loaded.model, batch.tokens, batch.lengths, batch_size, device_of(loaded),
                            condition)
    bad = torch.from_numpy(~batch.ok)
    mu[bad] = float("nan")
    lv[bad] = float("nan")
    return mu, lv, batch.errors


@torch.no_grad()
def code_table(loaded: LoadedModel, smiles: Sequence[str], batch_size: int = 1000,
               progress: Callable[[int], None] | None = None) -> pd.DataFrame:
    """Latent means and variances per molecule plus its ELBO (higher = more typical) and
    ``ood_score = -elbo`` for out-of-distribution screening. Bad molecules get an error.
    One SMILES string is one molecule; ``progress(k)`` after each k molecules."""
    smiles = [smiles] if isinstance(smiles, str) else list(smiles)
    batch = tokenize_smiles(loaded.vocab, smiles, strict=False)
    dev = device_of(loaded)
    mus, lvs, elbos = [], [], []
    for idx in sequential_batches(len(smiles), batch_size):
        m, v = encode_batches(loaded.model, batch.tokens[idx], batch.lengths[idx], batch_size, dev)
        # trimmed to this batch's longest: the padding after it adds nothing to the loss
        t = torch.from_numpy(batch.tokens[idx, : int(batch.lengths[idx].max())]).to(dev)
        recon = reconstruction_loss(loaded.model.decoder(m.to(dev), t), t)
        elbos.append(-(recon + kl_divergence(m.to(dev), v.to(dev)).sum(1)).cpu())
        mus.append(m)
        lvs.append(v)
        if progress:
            progress(len(idx))
    z = loaded.model.latent_size
    mu, lv = (torch.cat(mus), torch.cat(lvs)) if mus else (torch.empty(0, z), torch.empty(0, z))
    elbo = torch.cat(elbos).numpy() if elbos else np.empty(0)
    mu, var = mu.numpy(), lv.exp().numpy()
    bad = ~batch.ok
    elbo[bad], mu[bad], var[bad] = np.nan, np.nan, np.nan
    df = pd.DataFrame({"input": list(smiles), "smiles": batch.canonical,
                       "error": [e or "" for e in batch.errors], "elbo": elbo, "ood_score": -elbo})
    latent = pd.DataFrame(np.concatenate([mu, var], axis=1),
                          columns=[f"mu_{i}" for i in range(mu.shape[1])]
                          + [f"var_{i}" for i in range(var.shape[1])])
    return pd.concat([df, latent], axis=1)


@torch.no_grad()
def dataset_codes(model: SelfiesVAE, ds: EncodedDataset, n: int, batch_size: int,
                device: torch.device, seed: int = 0,
                condition_names: Sequence[str] = ()) -> dict[str, torch.Tensor]:
    """Posterior means and log-variances (float16, (M, Z)) of a seeded random ``n`` of
    ``ds``: an estimate of the aggregate posterior q(z) = E_x q(z|x), the learned prior
    that ``generate.sample`` with prior "posterior" draws from. With ``condition_names``
    (a conditional model) also the codes' molecules' values of them, "properties" (M, K)
    float32, which conditional sampling picks codes by."""
    model.eval()
    pick = np.sort(np.random.default_rng(seed).permutation(len(ds))[:n])
    if not len(pick):
        raise GenerationError("no molecules to take prior codes from")
    tokens, lengths = collate(ds, pick)
    mu, logvar = encode_batches(model, tokens, lengths, batch_size, device)
    out = {"mu": mu.half(), "logvar": logvar.half()}
    if condition_names:
        out["properties"] = torch.from_numpy(np.stack(
            [np.asarray(ds.properties[k], dtype=np.float32)[pick] for k in condition_names], 1))
    return out


# --------------------------------------------------------------------------- the prior

PRIORS = ("auto", "normal", "posterior")


def _check_width(width: float) -> None:
    if not 0 < width < math.inf:
        raise GenerationError(f"prior width must be > 0, got {width}")


def resolve_prior(loaded: LoadedModel, prior: str) -> str:
    """"auto" -> "posterior" when the checkpoint stores posterior codes, else "normal"."""
    if prior not in PRIORS:
        raise GenerationError(f"prior must be one of {', '.join(PRIORS)}, got {prior!r}")
    if prior == "posterior" and loaded.prior is None:
        raise GenerationError(f"{loaded.path or 'this model'} stores no posterior codes; add them "
                              "with `molvae prior TRAIN_FILE --model MODEL` or sample with prior 'normal'")
    if prior == "auto":
        return "posterior" if loaded.prior is not None else "normal"
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

    ``targets`` ({property: (low, high)}, a conditional model's request): codes are drawn
    (with replacement) with weights that fall off as a Gaussian of each code molecule's
    distance to the requested range, in standard deviations over ``CODE_BANDWIDTH``: a
    conditional prior p(z|c). ``condition(k)`` then gives the decoder's condition input.
    """

    def __init__(self, loaded: LoadedModel, prior: str, generator: torch.Generator,
                 part: tuple[int, int] = (0, 1), code_seed: int | None = None,
                 width: float | None = None,
                 targets: dict[str, tuple[float, float]] | None = None, use_codes: bool = True):
        if width is not None:
            _check_width(width)
        self.kind = resolve_prior(loaded, prior)
        self.part = part
        self.code_gen = (generator if code_seed is None else
                         torch.Generator(device=device_of(loaded)).manual_seed(code_seed))
        self.gen = generator
        self.size = loaded.model.latent_size
        self.device = device_of(loaded)
        if self.kind == "posterior":
            self.mu = loaded.prior["mu"].to(self.device)
            width = loaded.prior.get("width", 1.0) if width is None else width
            self.std = (width * torch.exp(0.5 * loaded.prior["logvar"])).to(self.device)
            self.order = torch.empty(0, dtype=torch.long, device=self.device)
        self.targets, self.space = targets or {}, loaded.conditions
        self.weights = self.last = None
        if self.targets and use_codes and self.kind == "posterior":
            props = loaded.prior.get("properties")
            if props is None:
                raise GenerationError(f"{loaded.path or 'this model'}: its prior codes carry no "
                                      "property values to condition on; store them with `molvae "
                                      "prior TRAIN_FILE --model MODEL`, or set "
                                      "generate.condition_codes = false")
            self.props = props.to(self.device)
            self.weights = code_weights(self.space, self.props, self.targets)

    def __call__(self, k: int) -> torch.Tensor:
        eps = torch.randn(k, self.size, generator=self.gen, device=self.device)
        if self.kind == "normal":
            return eps
        if self.weights is not None:
            self.last = torch.multinomial(self.weights, k, replacement=True, generator=self.code_gen)
            return self.mu[self.last] + self.std[self.last] * eps
        while len(self.order) < k:
            perm = torch.randperm(len(self.mu), generator=self.code_gen, device=self.device)
            self.order = torch.cat([self.order, perm[self.part[0] :: self.part[1]]])
        idx, self.order = self.order[:k], self.order[k:]
        return self.mu[idx] + self.std[idx] * eps

    def condition(self, k: int, use_decoder: bool = True
                  ) -> tuple[torch.Tensor | None, dict[str, np.ndarray]]:
        """For the last ``k`` draws: the decoder's condition input (None without a request,
        or with ``use_decoder`` False) and the value each molecule was asked for: the drawn
        code's own value moved into the requested range (a single value: that value), or
        without conditioned codes a uniform draw in the range."""
        if not self.targets:
            return None, {}
        values = {}
        for name, (lo, hi) in self.targets.items():
            if self.weights is not None and self.last is not None and len(self.last) == k:
                v = self.props[self.last, self.space.names.index(name)].double().clamp(lo, hi)
            else:
                v = lo + (hi - lo) * torch.rand(k, generator=self.gen, device=self.device).double()
            values[name] = v.cpu().numpy().astype(np.float64)
        vec = self.space.vector(values, k) if use_decoder else None
        return vec, values


CODE_BANDWIDTH = 0.2  # in standard deviations of each property


def code_weights(space, props: torch.Tensor, targets: dict[str, tuple[float, float]]
                 ) -> torch.Tensor:
    """(M,) weights of codes whose molecules have property values ``props`` (M, K) for a
    request ``targets``: exp(-sum d^2 / 2 h^2), d the distance to each requested range in
    standard deviations, h = CODE_BANDWIDTH."""
    logw = torch.zeros(len(props), dtype=torch.float64, device=props.device)
    for name, (lo, hi) in targets.items():
        k = space.names.index(name)
        x = props[:, k].double()
        d = (torch.clamp(lo - x, min=0) + torch.clamp(x - hi, min=0)) / space.std[k]
        logw -= 0.5 * (d / CODE_BANDWIDTH) ** 2
    return torch.exp(logw - logw.max())


def fit_prior(loaded: LoadedModel, smiles: Sequence[str], n: int = 16384, seed: int = 0,
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
        batch = tokenize_smiles(loaded.vocab, pick, strict=False)
        for t, ln, c, e in zip(batch.tokens, batch.lengths, batch.canonical, batch.errors,
                               strict=True):
            if e is None:
                rows.append((t[:ln], ln))
                canon.append(c)
        if len(rows) >= n:
            break
    if not rows:
        raise GenerationError("none of the molecules can be encoded by this model")
    rows, canon = rows[:n], canon[:n]
    tokens = np.full((len(rows), max(ln for _, ln in rows)), PAD_ID, dtype=np.int64)
    for i, (t, ln) in enumerate(rows):
        tokens[i, :ln] = t
    ds = EncodedDataset(canon, tokens, np.array([ln for _, ln in rows]), loaded.vocab,
                        properties=_condition_values(loaded, canon))
    names = loaded.conditions.names if loaded.conditions is not None else ()
    return {**dataset_codes(loaded.model, ds, n, batch_size, device_of(loaded), seed, names),
            "width": float(width), "ring_sizes": dataset_ring_sizes(ds)}


def own_condition(loaded: LoadedModel, smiles: Sequence[str]) -> torch.Tensor | None:
    """A conditional model's condition input (N, C) that describes each molecule itself: its
    own RDKit properties (nothing given for '' or a molecule RDKit cannot read). A CVAE
    reconstructs x from its code and c(x). None for an unconditional model and for one
    conditioned on data columns (values that bare molecules do not carry)."""
    from .chem import PROPERTIES  # here, not at import: training needs no RDKit

    space = loaded.conditions
    if space is None or any(k not in PROPERTIES for k in space.names):
        return None
    return space.known_vector(_condition_values(loaded, [s or "" for s in smiles]), len(smiles))


def _condition_values(loaded: LoadedModel, smiles: list[str]) -> dict[str, np.ndarray]:
    """A conditional model's condition properties of ``smiles`` (RDKit properties only: a
    data column's values come with the training data, ``train.prior_codes``)."""
    if loaded.conditions is None:
        return {}
    from . import chem

    names = loaded.conditions.names
    other = [k for k in names if k not in chem.PROPERTIES]
    if other:
        raise GenerationError(f"conditions {', '.join(other)} are data columns, not RDKit "
                              "properties: their codes are stored by training (train.prior_codes)")
    rows = chem.score_smiles(smiles, filters=(), property_names=names)
    return {k: np.array([r[k] for r in rows], dtype=np.float32) for k in names}


def dataset_ring_sizes(ds: EncodedDataset, n: int = 20_000) -> list[int]:
    """The ring sizes the training molecules contain (the ring grammar's allowed set), from
    the SELFIES of up to ``n`` of them."""
    return allowed_ring_sizes(ds.vocab.to_selfies(row) for row in ds.tokens[:n])


# --------------------------------------------------------------------------- geometry


def slerp(a: torch.Tensor, b: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """Spherical interpolation of (Z,) vectors at fractions t (K,) -> (K, Z)."""
    an, bn = a / a.norm(), b / b.norm()
    omega = torch.arccos((an * bn).sum().clamp(-1 + 1e-7, 1 - 1e-7))
    so = torch.sin(omega)
    if so.abs() < 1e-6:
        return (1 - t)[:, None] * a + t[:, None] * b
    return (torch.sin((1 - t) * omega) / so)[:, None] * a + (torch.sin(t * omega) / so)[:, None] * b
