"""fit(), the Callback protocol, and checkpoints (plain data, ``weights_only=True``).

The loop knows nothing about tracking or progress bars: it calls callbacks.
"""

from __future__ import annotations

import hashlib
import logging
import math
import os
import time
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch
from pydantic import ValidationError

from . import chem
from .config import DataConfig, ModelConfig, TrainConfig
from .data import EncodedDataset, bucketed_batches, collate, prepare, sequential_batches, split
from .model import (
    SelfiesVAE,
    beta_at,
    build_model,
    kl_divergence,
    kl_term,
    reconstruction_loss,
    token_accuracy,
)
from .vocab import Vocab, selfies_to_smiles

logger = logging.getLogger(__name__)

FORMAT_VERSION = 1


class CheckpointError(ValueError):
    """A checkpoint is missing, corrupt, truncated or incompatible."""


class Callback(Protocol):
    def on_train_start(self, info: dict[str, Any]) -> None: ...
    def on_batch_end(self, step: int, metrics: dict[str, float]) -> None: ...
    def on_epoch_end(self, epoch: int, metrics: dict[str, float]) -> None: ...
    def on_train_end(self, result: TrainResult) -> None: ...


@dataclass
class TrainResult:
    model: SelfiesVAE
    vocab: Vocab
    history: list[dict[str, float]]
    checkpoint: Path
    best_checkpoint: Path
    stopped_early: bool = False
    seconds: float = 0.0


@dataclass
class LoadedModel:
    """A model loaded from a checkpoint, with what generation needs beside the weights."""

    model: SelfiesVAE
    vocab: Vocab
    model_config: ModelConfig
    train_config: dict
    property_stats: dict[str, tuple[float, float]] = field(default_factory=dict)
    train_hashes: np.ndarray | None = None  # sorted int64 hashes of training SMILES
    history: list[dict] = field(default_factory=list)
    info: dict = field(default_factory=dict)
    path: Path | None = None
    prior: dict | None = None  # posterior "mu"/"logvar" (M, Z) of M training molecules, "width"

    def is_novel(self, smiles: Sequence[str]) -> np.ndarray:
        """True where a canonical SMILES is not in the training set (needs train_hashes)."""
        if self.train_hashes is None or len(self.train_hashes) == 0:
            return np.ones(len(smiles), dtype=bool)
        h = smiles_hashes(smiles)
        pos = np.searchsorted(self.train_hashes, h).clip(0, len(self.train_hashes) - 1)
        return self.train_hashes[pos] != h


def smiles_hashes(smiles: Sequence[str]) -> np.ndarray:
    """64-bit blake2b hashes of SMILES strings (compact training-set membership)."""
    return np.array(
        [int.from_bytes(hashlib.blake2b(s.encode(), digest_size=8).digest(), "little", signed=True)
         for s in smiles],
        dtype=np.int64,
    )


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("device = 'cuda' but no CUDA device is available")
    return torch.device(name)


# --------------------------------------------------------------------------- checkpoints


def save_checkpoint(path: Path, state: dict) -> None:
    """Atomic write: temp file + rename, so a kill never leaves a half checkpoint."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + f".tmp{os.getpid()}")
    torch.save(state, tmp)
    os.replace(tmp, path)


def read_checkpoint(path: str | Path) -> dict:
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: model file not found")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except (RuntimeError, EOFError, zipfile.BadZipFile, ValueError, OSError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise CheckpointError(f"{path}: not a readable molvae checkpoint ({first[:160]})") from None
    except Exception as exc:  # weights_only unpickler errors have varied types
        raise CheckpointError(f"{path}: not a readable molvae checkpoint ({type(exc).__name__})") from None
    if not isinstance(state, dict) or "format_version" not in state:
        raise CheckpointError(f"{path}: not a molvae checkpoint (no format_version)")
    if state["format_version"] != FORMAT_VERSION:
        raise CheckpointError(
            f"{path}: checkpoint format {state['format_version']} is not supported "
            f"(this molvae reads format {FORMAT_VERSION})"
        )
    missing = [k for k in ("model_config", "vocab", "model_state") if k not in state]
    if missing:
        raise CheckpointError(f"{path}: incomplete checkpoint (missing {', '.join(missing)})")
    return state


def load_model(path: str | Path, device: str | torch.device = "cpu") -> LoadedModel:
    """Load a checkpoint for inference; raises CheckpointError with one clear line."""
    state = read_checkpoint(path)
    try:
        mcfg = ModelConfig.model_validate(state["model_config"])
        vocab = Vocab.from_list(state["vocab"])
        model = build_model(mcfg, len(vocab))
        model.load_state_dict(state["model_state"])
    except (ValidationError, ValueError, RuntimeError, KeyError) as exc:
        first = str(exc).strip().splitlines()[0]
        raise CheckpointError(f"{path}: incompatible checkpoint ({first[:160]})") from None
    model.to(device).eval()
    stats = {k: (float(m), float(s)) for k, (m, s) in state.get("property_stats", {}).items()}
    hashes = state.get("train_hashes")
    return LoadedModel(
        model=model,
        vocab=vocab,
        model_config=mcfg,
        train_config=state.get("train_config", {}),
        property_stats=stats,
        train_hashes=hashes.numpy() if isinstance(hashes, torch.Tensor) else None,
        history=state.get("history", []),
        info=state.get("info", {}),
        path=Path(path),
        prior=_read_prior(state.get("prior"), mcfg.latent_size, path),
    )


def _read_prior(prior, latent_size: int, path) -> dict | None:
    if prior is None:
        return None
    ok = (isinstance(prior, dict) and all(isinstance(prior.get(k), torch.Tensor)
                                          for k in ("mu", "logvar"))
          and prior["mu"].shape == prior["logvar"].shape
          and prior["mu"].ndim == 2 and prior["mu"].shape[1] == latent_size
          and len(prior["mu"]) > 0)
    width = prior.get("width", 1.0) if ok else None
    if not ok or isinstance(width, bool) or not isinstance(width, (int, float)) \
            or not 0 < width < math.inf:
        raise CheckpointError(f"{path}: incompatible checkpoint (malformed posterior prior)")
    return {"mu": prior["mu"].float(), "logvar": prior["logvar"].float(), "width": float(width)}


def export_model(src: str | Path, dest: str | Path) -> Path:
    """Strip optimizer and RNG state from a training checkpoint (a small inference file)."""
    state = read_checkpoint(src)
    keep = {k: v for k, v in state.items() if k not in ("optimizer_state", "scheduler_state", "rng")}
    save_checkpoint(Path(dest), keep)
    return Path(dest)


def store_prior(src: str | Path, prior: dict, dest: str | Path | None = None) -> Path:
    """Write ``src`` with ``prior`` (from ``generate.fit_prior``: codes and kernel width) to
    ``dest`` (default: in place, atomically)."""
    state = read_checkpoint(src)
    state["prior"] = {**{k: prior[k].half().cpu() for k in ("mu", "logvar")},
                      "width": float(prior.get("width", 1.0))}
    dest = Path(dest or src)
    save_checkpoint(dest, state)
    return dest


# --------------------------------------------------------------------------- evaluation


@torch.no_grad()
def evaluate_dataset(model: SelfiesVAE, ds: EncodedDataset, vocab: Vocab, batch_size: int,
                     device: torch.device, recon_size: int = 0,
                     property_stats: dict | None = None) -> dict[str, float]:
    """Validation metrics: loss terms, token accuracy, KL per molecule, active units
    (Burda et al. 2016: Cov_x E[z_u] > 0.01) and exact greedy reconstruction of mu."""
    model.eval()
    totals = {"recon": 0.0, "kl": 0.0, "acc": 0.0, "prop_mse": 0.0}
    mus = []
    n = 0
    for idx in sequential_batches(len(ds), batch_size):
        tokens, lengths = (torch.from_numpy(a).to(device) for a in collate(ds, idx))
        mu, logvar = model.encode(tokens, lengths)
        logits = model.decoder(mu, tokens)
        b = len(idx)
        totals["recon"] += float(reconstruction_loss(logits, tokens).sum())
        totals["kl"] += float(kl_divergence(mu, logvar).sum())
        totals["acc"] += float(token_accuracy(logits, tokens)) * b
        if model.property_head is not None and property_stats:
            y = _property_targets(ds, idx, property_stats).to(device)
            totals["prop_mse"] += float(((model.property_head(mu) - y) ** 2).mean(1).sum())
        mus.append(mu.cpu())
        n += b
    mu_all = torch.cat(mus)
    active = int((mu_all.var(dim=0) > 0.01).sum()) if len(mu_all) > 1 else 0
    out = {
        "val_recon": totals["recon"] / n,
        "val_kl": totals["kl"] / n,
        "val_token_acc": totals["acc"] / n,
        "active_units": float(active),
    }
    if model.property_head is not None and property_stats:
        out["val_prop_mse"] = totals["prop_mse"] / n
    if recon_size > 0:
        sub = ds.subset(np.arange(min(recon_size, len(ds))))
        out["val_exact_recon"] = exact_reconstruction(model, sub, vocab, batch_size, device)
    return out


@torch.no_grad()
def exact_reconstruction(model: SelfiesVAE, ds: EncodedDataset, vocab: Vocab, batch_size: int,
                         device: torch.device) -> float:
    """Fraction of molecules whose greedy decode of mu gives the same canonical SMILES."""
    model.eval()
    hits = 0
    max_len = int(ds.tokens.shape[1]) + 10
    for idx in sequential_batches(len(ds), batch_size):
        tokens, lengths = (torch.from_numpy(a).to(device) for a in collate(ds, idx))
        mu, _ = model.encode(tokens, lengths)
        ids = model.decoder.generate(mu, max_length=max_len, greedy=True,
                                     banned_first=vocab.structural_ids()).cpu().numpy()
        for row, i in zip(ids, idx, strict=True):
            smi = chem.canonical_smiles(selfies_to_smiles(vocab.decode(row)))
            hits += int(smi == ds.smiles[i])
    return hits / max(len(ds), 1)


@torch.no_grad()
def prior_codes(model: SelfiesVAE, ds: EncodedDataset, n: int, batch_size: int,
                device: torch.device, seed: int = 0) -> dict[str, torch.Tensor]:
    """Posterior means and log-variances (float16, (M, Z)) of a seeded random ``n`` of
    ``ds``: an estimate of the aggregate posterior q(z) = E_x q(z|x), the learned prior
    that ``generate.sample(prior="posterior")`` draws from."""
    model.eval()
    pick = np.sort(np.random.default_rng(seed).permutation(len(ds))[:n])
    mus, lvs = [], []
    for idx in sequential_batches(len(pick), batch_size):
        tokens, lengths = (torch.from_numpy(a).to(device) for a in collate(ds, pick[idx]))
        mu, logvar = model.encode(tokens, lengths)
        mus.append(mu.cpu().half())
        lvs.append(logvar.cpu().half())
    if not mus:
        raise ValueError("no molecules to take prior codes from")
    return {"mu": torch.cat(mus), "logvar": torch.cat(lvs)}


def _add_prior_codes(model: SelfiesVAE, path: Path, ds: EncodedDataset, cfg: TrainConfig,
                     device: torch.device) -> None:
    """Store ``prior_codes`` of the checkpoint's own weights in it (the model in memory
    may hold other weights, e.g. best.pt's epoch was not the last)."""
    state = read_checkpoint(path)
    model.load_state_dict(state["model_state"])
    state["prior"] = prior_codes(model, ds, cfg.prior_codes, max(cfg.batch_size, 256), device,
                                 cfg.seed)
    save_checkpoint(path, state)


def _property_targets(ds: EncodedDataset, idx: np.ndarray, stats: dict) -> torch.Tensor:
    cols = [(np.nan_to_num(ds.properties[k][idx], nan=m) - m) / s for k, (m, s) in stats.items()]
    return torch.from_numpy(np.stack(cols, axis=1).astype(np.float32))


# --------------------------------------------------------------------------- training


def lr_factor(step: int, total: int, warmup: int, floor: float) -> float:
    """Multiplier of the peak learning rate: linear warm-up over ``warmup`` steps, then cosine
    decay to ``floor`` at ``total`` steps."""
    if step < warmup:
        return (step + 1) / warmup
    t = min(1.0, (step - warmup) / max(1, total - warmup))
    return floor + (1.0 - floor) * 0.5 * (1.0 + math.cos(math.pi * t))


def fit(
    train_ds: EncodedDataset,
    val_ds: EncodedDataset,
    model_cfg: ModelConfig,
    cfg: TrainConfig,
    callbacks: Sequence[Callback] = (),
    resume: str | Path | None = None,
    data_info: dict | None = None,
) -> TrainResult:
    """Train a SelfiesVAE; checkpoint every epoch to ``cfg.out_dir/last.pt`` (and ``best.pt``).

    With ``resume``, training continues from that checkpoint and, with the same seed and
    data, ends with the same weights as an uninterrupted run.
    """
    if len(train_ds) == 0 or len(val_ds) == 0:
        raise ValueError("training and validation sets must both be non-empty")
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    device = resolve_device(cfg.device)
    vocab = train_ds.vocab
    torch.manual_seed(cfg.seed)
    model = build_model(model_cfg, len(vocab)).to(device)
    if cfg.freeze_encoder:  # posteriors stay fixed; a step skips the encoder's backward pass
        for p in (*model.encoder.parameters(), *model.latent.parameters()):
            p.requires_grad_(False)
    trainable = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(trainable, lr=cfg.lr, weight_decay=cfg.weight_decay)
    steps_per_epoch = math.ceil(len(train_ds) / cfg.batch_size)
    total_steps = steps_per_epoch * cfg.epochs
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda t: lr_factor(t, total_steps, cfg.lr_warmup_steps, cfg.lr_min / cfg.lr))

    props = list(model_cfg.property_names)
    missing = [p for p in props if p not in train_ds.properties]
    if missing:
        raise ValueError(f"property head needs properties the dataset lacks: {', '.join(missing)}")
    prop_stats = {p: (float(np.nanmean(train_ds.properties[p])),
                      float(np.nanstd(train_ds.properties[p]) or 1.0)) for p in props}

    out_dir = Path(cfg.out_dir)
    last_path, best_path = out_dir / "last.pt", out_dir / "best.pt"
    start_epoch, step, best_val, bad_epochs, history = 0, 0, math.inf, 0, []
    source = resume if resume is not None else cfg.init_from  # weights to start from
    if source is not None:
        state = read_checkpoint(source)
        if state.get("vocab") != vocab.to_list():
            raise CheckpointError(f"{source}: vocabulary differs from this dataset's")
        if ModelConfig.model_validate(state["model_config"]) != model_cfg:
            raise CheckpointError(f"{source}: model config differs from the requested one")
        model.load_state_dict(state["model_state"])
        if resume is None:
            logger.info("starting from the weights of %s", source)
    if resume is not None:
        opt.load_state_dict(state["optimizer_state"])
        sched.load_state_dict(state["scheduler_state"])
        start_epoch, step = state["epoch"], state["step"]
        best_val, bad_epochs = state["best_val"], state["bad_epochs"]
        history = list(state["history"])
        torch.set_rng_state(state["rng"]["torch"])
        if device.type == "cuda" and "cuda" in state["rng"]:
            torch.cuda.set_rng_state(state["rng"]["cuda"])
        logger.info("resumed from %s at epoch %d", resume, start_epoch)

    train_hashes = torch.from_numpy(np.sort(smiles_hashes(train_ds.smiles)))
    info = {"train_size": len(train_ds), "val_size": len(val_ds), "vocab_size": len(vocab),
            "parameters": sum(p.numel() for p in model.parameters()),
            "steps_per_epoch": steps_per_epoch, "device": str(device), **(data_info or {})}
    for cb in callbacks:
        cb.on_train_start(info)

    t0 = time.perf_counter()
    stopped_early = False
    for epoch in range(start_epoch, cfg.epochs):
        model.train()
        rng = np.random.default_rng([cfg.seed, epoch])
        for idx in bucketed_batches(train_ds.lengths, cfg.batch_size, rng):
            tokens, lengths = (torch.from_numpy(a).to(device) for a in collate(train_ds, idx))
            out = model(tokens, lengths)
            recon = reconstruction_loss(out["logits"], tokens).mean()
            kl_dims = kl_divergence(out["mu"], out["logvar"])
            beta = beta_at(step, cfg.beta_schedule, cfg.beta_start, cfg.beta_max,
                           cfg.beta_warmup_steps)
            loss = recon + beta * kl_term(kl_dims, cfg.free_bits)
            metrics = {"loss": 0.0, "recon": float(recon.detach()),
                       "kl": float(kl_dims.detach().sum(1).mean()),
                       "beta": beta}
            if "properties" in out:
                y = _property_targets(train_ds, idx, prop_stats).to(device)
                prop_loss = torch.nn.functional.mse_loss(out["properties"], y)
                loss = loss + cfg.property_weight * prop_loss
                metrics["prop_mse"] = float(prop_loss.detach())
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(trainable, cfg.grad_clip)
            opt.step()
            sched.step()
            step += 1
            metrics["loss"] = float(loss.detach())
            metrics["token_acc"] = float(token_accuracy(out["logits"].detach(), tokens))
            metrics["lr"] = sched.get_last_lr()[0]
            metrics["epoch_progress"] = len(idx)
            for cb in callbacks:
                cb.on_batch_end(step, metrics)
            if cfg.max_minutes and time.perf_counter() - t0 > cfg.max_minutes * 60:
                break

        val = evaluate_dataset(model, val_ds, vocab, max(cfg.batch_size, 256), device,
                               cfg.recon_eval_size, prop_stats)
        val_loss = val["val_recon"] + cfg.beta_max * val["val_kl"]
        val.update({"epoch": epoch + 1, "step": step, "val_loss": val_loss,
                    "seconds": time.perf_counter() - t0})
        history.append(val)
        improved = val_loss < best_val - 1e-4
        best_val, bad_epochs = (val_loss, 0) if improved else (best_val, bad_epochs + 1)
        rng_state = {"torch": torch.get_rng_state()}
        if device.type == "cuda":
            rng_state["cuda"] = torch.cuda.get_rng_state()
        state = {
            "format_version": FORMAT_VERSION,
            "model_config": model_cfg.model_dump(mode="json"),
            "train_config": cfg.model_dump(mode="json"),
            "vocab": vocab.to_list(),
            "model_state": {k: v.detach().cpu() for k, v in model.state_dict().items()},
            "optimizer_state": opt.state_dict(),
            "scheduler_state": sched.state_dict(),
            "epoch": epoch + 1,
            "step": step,
            "best_val": best_val,
            "bad_epochs": bad_epochs,
            "history": history,
            "rng": rng_state,
            "property_stats": {k: [m, s] for k, (m, s) in prop_stats.items()},
            "train_hashes": train_hashes,
            "info": {k: v for k, v in info.items() if isinstance(v, (int, float, str))},
        }
        save_checkpoint(last_path, state)
        if improved or not best_path.exists():
            save_checkpoint(best_path, state)
        for cb in callbacks:
            cb.on_epoch_end(epoch + 1, val)
        if bad_epochs >= cfg.patience:
            stopped_early = True
            logger.info("early stopping after epoch %d", epoch + 1)
            break
        if cfg.max_minutes and time.perf_counter() - t0 > cfg.max_minutes * 60:
            logger.info("time budget of %.1f min reached after epoch %d", cfg.max_minutes, epoch + 1)
            break

    if cfg.prior_codes:
        final = {k: v.detach().clone() for k, v in model.state_dict().items()}
        for path in (best_path, last_path):
            if path.exists():
                _add_prior_codes(model, path, train_ds, cfg, device)
        model.load_state_dict(final)
        logger.info("stored %d posterior codes as the sampling prior",
                    min(cfg.prior_codes, len(train_ds)))
    model.eval()
    result = TrainResult(model, vocab, history, last_path, best_path, stopped_early,
                         time.perf_counter() - t0)
    for cb in callbacks:
        cb.on_train_end(result)
    return result


def train_model(
    data_cfg: DataConfig,
    model_cfg: ModelConfig,
    cfg: TrainConfig,
    callbacks: Sequence[Callback] = (),
    resume: str | Path | None = None,
    data_progress=None,
) -> TrainResult:
    """Prepare ``data_cfg.path`` (cached), split train/validation, and ``fit``."""
    ds = prepare(data_cfg, compute_properties=model_cfg.property_names, progress=data_progress)
    train_ds, val_ds = split(ds, data_cfg.val_fraction, data_cfg.split_seed)
    info = {"data_path": str(data_cfg.path), "data_key": ds.key, **{
        f"data_{k}": v for k, v in ds.report["dropped"].items()}, "data_rows": ds.report["rows"]}
    return fit(train_ds, val_ds, model_cfg, cfg, callbacks, resume, info)
