"""fit() as a short loop over train_step, the Callback protocol, validation, schedules.

Checkpoints are written through ``molvae.checkpoint`` (the schema lives there).

The loop knows nothing about tracking or progress bars: it calls callbacks."""

from __future__ import annotations

import contextlib
import logging
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch

from .checkpoint import (
    TRAINING_ONLY,
    model_record,
    read_checkpoint,
    resolve_device,
    resume_record,
    save_checkpoint,
    smiles_hashes,
    training_hashes,
)
from .conditions import ConditionSpace
from .config import DataConfig, ModelConfig, TrainConfig
from .data import EncodedDataset, bucketed_batches, collate, prepare, split
from .distill import Pairs, distill_loss, load_pairs, pairs_file, pairs_loss
from .errors import CheckpointError, TrainingError
from .files import make_writable_folder
from .latent import dataset_codes, dataset_ring_sizes
from .model import (
    SelfiesVAE,
    beta_at,
    build_model,
    kl_divergence,
    kl_term,
    load_widened,
    reconstruction_loss,
    token_accuracy,
)
from .schedule import fitted_steps, lr_factor
from .validation import evaluate_dataset, property_targets
from .vocab import Vocab

logger = logging.getLogger(__name__)

class Callback(Protocol):
    def on_train_start(self, info: dict[str, Any]) -> None: ...
    def on_batch_end(self, step: int, metrics: dict[str, float]) -> None: ...
    def on_epoch_end(self, epoch: int, metrics: dict[str, float]) -> None: ...
    def on_train_end(self, result: TrainResult) -> None: ...


@dataclass
class TrainResult:
    vocab: Vocab
    history: list[dict[str, float]]
    checkpoint: Path
    best_checkpoint: Path
    stopped_early: bool = False
    seconds: float = 0.0


def _add_prior_codes(model: SelfiesVAE, path: Path, ds: EncodedDataset, cfg: TrainConfig,
                     device: torch.device) -> None:
    """Store ``prior_codes`` of the checkpoint's own weights in it (the model in memory
    may hold other weights, e.g. best.pt's epoch was not the last)."""
    state = read_checkpoint(path)
    model.load_state_dict(state["model_state"])
    names = (state.get("conditions") or {}).get("names", ())
    state["prior"] = dataset_codes(model, ds, cfg.prior_codes, max(cfg.batch_size, 256),
                                   device, cfg.seed, names)
    save_checkpoint(path, state)


# --------------------------------------------------------------------------- training


@dataclass
class _Loop:
    """Everything that changes while training, and what a resumed run restores."""

    model: SelfiesVAE
    opt: torch.optim.Optimizer
    sched: torch.optim.lr_scheduler.LambdaLR
    trainable: list[torch.nn.Parameter]
    device: torch.device
    prop_stats: dict[str, tuple[float, float]]
    conditions: ConditionSpace | None = None
    pairs: Pairs | None = None  # train.distill's (val_pairs: its last rows, held out)
    val_pairs: Pairs | None = None
    epoch: int = 0
    step: int = 0
    total_steps: int = 1  # the cosine's length (lr_fit_to_time shortens it)
    best_val: float = math.inf
    bad_epochs: int = 0
    history: list[dict] = field(default_factory=list)


@contextlib.contextmanager
def _torch_scope(seed: int, threads: int | None):
    """Seed torch and set its threads for the run only: the caller's RNG state and thread
    count are restored afterwards (library code changes no global state)."""
    before = torch.get_num_threads()
    with torch.random.fork_rng(devices=range(torch.cuda.device_count())):
        torch.manual_seed(seed)
        if threads:
            torch.set_num_threads(threads)
        try:
            yield
        finally:
            torch.set_num_threads(before)


def _start(train_ds: EncodedDataset, model_cfg: ModelConfig, cfg: TrainConfig,
           resume: str | Path | None) -> _Loop:
    """Build the model, optimizer and schedule; load weights (init_from) or a whole run (resume)."""
    if model_cfg.steering:
        raise TrainingError("model.steering: a steering head is fitted after training (`molvae "
                            "steer`), not trained; leave it empty")
    device = resolve_device(cfg.device)
    model = build_model(model_cfg, len(train_ds.vocab)).to(device)
    if cfg.freeze_encoder:  # posteriors stay fixed; a step skips the encoder's backward pass
        for p in (*model.encoder.parameters(), *model.latent.parameters()):
            p.requires_grad_(False)
    if cfg.sampler_only:  # the sampler's weights alone: the rest stays exactly as it was
        if not model_cfg.sample_flag:
            raise TrainingError("train.sampler_only trains the sampler's own weights: the model "
                                "needs them (model.sample_flag = true)")
        for name, p in model.named_parameters():
            p.requires_grad_(".sampler." in f".{name}")
    trainable = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(trainable, lr=cfg.lr, weight_decay=cfg.weight_decay)
    props = list(model_cfg.property_names)
    if missing := [p for p in props if p not in train_ds.properties]:
        raise TrainingError(f"property head needs properties the dataset lacks: {', '.join(missing)}")
    stats = {p: (float(np.nanmean(train_ds.properties[p])),
                 float(np.nanstd(train_ds.properties[p]) or 1.0)) for p in props}
    conditions = (ConditionSpace.fit(model_cfg.conditions, train_ds.properties)
                  if model_cfg.conditions else None)
    loop = _Loop(model, opt, None, trainable, device, stats, conditions,  # type: ignore[arg-type]
                 total_steps=math.ceil(len(train_ds) / cfg.batch_size) * cfg.epochs)
    loop.sched = torch.optim.lr_scheduler.LambdaLR(  # reads total_steps as it changes
        opt, lambda t: lr_factor(t, loop.total_steps, cfg.lr_warmup_steps, cfg.lr_min / cfg.lr))
    source = resume if resume is not None else cfg.init_from  # weights to start from
    if source is None:
        return loop
    state = read_checkpoint(source)
    if state.get("vocab") != train_ds.vocab.to_list():
        raise CheckpointError(f"{source}: vocabulary differs from this dataset's")
    # a steering head is left out: fitted after training (it read the decoder training changes)
    theirs = ModelConfig.model_validate(state["model_config"]).model_copy(update={"steering": []})
    # fine-tune into a conditional model, or one with a sample flag: new weights start at zero
    grown = {k: getattr(model_cfg, k) for k in ("conditions", "sample_flag")
             if getattr(model_cfg, k) and not getattr(theirs, k)} if resume is None else {}
    if theirs.model_copy(update=grown) != model_cfg:
        raise _config_differs(source, model_cfg, theirs.model_copy(update=grown))
    load_widened(model, state["model_state"])  # the same model's weights, or grown ones
    if state.get("conditions") is not None:  # its condition weights read its standardization
        loop.conditions = ConditionSpace.from_record(state["conditions"])
    if resume is None:
        logger.info("starting from the weights of %s%s", source,
                    f" (new at zero: {', '.join(grown)})" if grown else "")
        return loop
    missing = [k for k in TRAINING_ONLY if k not in state]
    if missing:
        raise CheckpointError(f"{source}: cannot resume from an inference export (no "
                              f"{', '.join(missing)}); use --init-from to fine-tune from it")
    opt.load_state_dict(state["optimizer_state"])
    loop.sched.load_state_dict(state["scheduler_state"])
    loop.epoch, loop.step = state["epoch"], state["step"]
    loop.best_val, loop.bad_epochs = state["best_val"], state["bad_epochs"]
    loop.history = list(state["history"])
    torch.set_rng_state(state["rng"]["torch"])
    if device.type == "cuda" and "cuda" in state["rng"]:
        torch.cuda.set_rng_state(state["rng"]["cuda"])
    logger.info("resumed from %s at epoch %d", resume, loop.epoch)
    return loop


def _noise(cfg: TrainConfig, n: int, device: torch.device) -> float | torch.Tensor:
    """The latent draw's scale: latent_noise for all, or per molecule for a share of them."""
    if cfg.latent_noise_share >= 1 or cfg.latent_noise == 1:
        return cfg.latent_noise
    wide = torch.rand(n, 1, device=device) < cfg.latent_noise_share
    return torch.where(wide, cfg.latent_noise, 1.0)


def train_step(loop: _Loop, ds: EncodedDataset, idx: np.ndarray, cfg: TrainConfig) -> dict[str, float]:
    """One optimizer step on the molecules ``idx`` of ``ds``; returns the batch's metrics."""
    model = loop.model
    amp = loop.device.type == "cuda" if cfg.amp is None else cfg.amp
    if cfg.sampler_only:  # as many rows of the pairs instead; the molecules would teach nothing
        distill = distill_loss(model, loop.pairs, len(idx), (cfg.seed, loop.step), loop.device, amp)
        return _optimizer_step(loop, cfg, distill, {"distill": float(distill.detach())}, len(idx))
    tokens, lengths = (torch.from_numpy(a).to(loop.device, non_blocking=True)
                       for a in collate(ds, idx))
    cond = None
    if loop.conditions is not None:
        cond = loop.conditions.training_vector(ds.properties, idx, cfg.condition_dropout,
                                               cfg.property_dropout, None).to(loop.device)
    with torch.autocast(loop.device.type, dtype=torch.bfloat16, enabled=amp):
        out = model(tokens, lengths, cond, _noise(cfg, len(idx), loop.device))
        recon = reconstruction_loss(out["logits"].float(), tokens).mean()
    kl_dims = kl_divergence(out["mu"].float(), out["logvar"].float())
    beta = beta_at(loop.step, cfg.beta_schedule, cfg.beta_start, cfg.beta_max, cfg.beta_warmup_steps)
    loss = recon + beta * kl_term(kl_dims, cfg.free_bits)
    metrics = {"recon": float(recon.detach()), "kl": float(kl_dims.detach().sum(1).mean()),
               "beta": beta}
    if "properties" in out:
        y = property_targets(ds, idx, loop.prop_stats).to(loop.device)
        prop_loss = torch.nn.functional.mse_loss(out["properties"].float(), y)
        loss = loss + cfg.property_weight * prop_loss
        metrics["prop_mse"] = float(prop_loss.detach())
    if loop.pairs is not None:
        distill = distill_loss(model, loop.pairs, len(idx), (cfg.seed, loop.step), loop.device, amp)
        loss = loss + cfg.distill_weight * distill
        metrics["distill"] = float(distill.detach())
    metrics["token_acc"] = float(token_accuracy(out["logits"].detach(), tokens))
    return _optimizer_step(loop, cfg, loss, metrics, len(idx))


def _optimizer_step(loop: _Loop, cfg: TrainConfig, loss: torch.Tensor, metrics: dict,
                    n: int) -> dict[str, float]:
    if not torch.isfinite(loss):
        raise TrainingError(
            f"the loss became {float(loss.detach())} at step {loop.step + 1} (learning rate "
            f"{loop.sched.get_last_lr()[0]:.3g}: too high?); training stopped, and the checkpoints "
            f"in {cfg.out_dir} are those of the last finished epoch")
    loop.opt.zero_grad(set_to_none=True)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(loop.trainable, cfg.grad_clip)
    loop.opt.step()
    loop.sched.step()
    loop.step += 1
    metrics.update(loss=float(loss.detach()), lr=loop.sched.get_last_lr()[0], epoch_progress=n)
    return metrics


def _end_epoch(loop: _Loop, val_ds: EncodedDataset, cfg: TrainConfig, model_cfg: ModelConfig,
               facts: dict, seconds: float) -> tuple[dict, bool]:
    """Validate, record, and write last.pt (and best.pt when it improved)."""
    val = evaluate_dataset(loop.model, val_ds, max(cfg.batch_size, 256), loop.device,
                           cfg.recon_eval_size, property_stats=loop.prop_stats,
                           conditions=loop.conditions)
    val_loss = val["val_recon"] + cfg.beta_max * val["val_kl"]
    if loop.val_pairs is not None:  # refinement's pairs held out: the sampler's own figure
        val["val_distill"] = pairs_loss(loop.model, loop.val_pairs, loop.device)
        val_loss = (0.0 if cfg.sampler_only else val_loss) + cfg.distill_weight * val["val_distill"]
    val.update(epoch=loop.epoch, step=loop.step, val_loss=val_loss, seconds=seconds)
    loop.history.append(val)
    improved = val_loss < loop.best_val - 1e-4
    loop.best_val, loop.bad_epochs = (val_loss, 0) if improved else (loop.best_val,
                                                                     loop.bad_epochs + 1)
    state = {**model_record(loop.model, model_cfg, cfg.model_dump(mode="json"), val_ds.vocab,
                            {**facts, "property_stats": loop.prop_stats, "history": loop.history,
                             "conditions": loop.conditions}),
             **resume_record(loop.opt, loop.sched, loop.device, epoch=loop.epoch, step=loop.step,
                             best_val=loop.best_val, bad_epochs=loop.bad_epochs)}
    out_dir = Path(cfg.out_dir)
    save_checkpoint(out_dir / "last.pt", state)
    if improved or not (out_dir / "best.pt").exists():
        save_checkpoint(out_dir / "best.pt", state)
    return val, improved


def check_out_dir(cfg: TrainConfig, resume: str | Path | None = None) -> None:
    """Before any work: ``cfg.out_dir`` must be writable and must not hold a trained model
    (unless resuming it, or ``cfg.overwrite``)."""
    out = Path(cfg.out_dir)
    taken = [p.name for p in (out / "best.pt", out / "last.pt") if p.exists()]
    if taken and resume is None and not cfg.overwrite:
        raise TrainingError(f"{out} already holds a trained model ({', '.join(taken)}); choose "
                            "another --out (train.out_dir), continue it with --resume, or "
                            "replace it with --overwrite (train.overwrite = true)")
    try:
        make_writable_folder(out)
    except OSError as exc:
        raise TrainingError(f"{out}: cannot write checkpoints there ({exc.strerror or exc})") from None


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
    data, ends with the same weights as an uninterrupted run."""
    if len(train_ds) == 0 or len(val_ds) == 0:
        raise TrainingError("training and validation sets must both be non-empty")
    with _torch_scope(cfg.seed, cfg.threads):
        return _fit(train_ds, val_ds, model_cfg, cfg, callbacks, resume, data_info or {})


def _fit(train_ds, val_ds, model_cfg, cfg, callbacks, resume, data_info) -> TrainResult:
    pairs = None if cfg.distill is None else load_pairs(cfg.distill, train_ds.vocab,
                                                          model_cfg.latent_size, cfg.init_from)
    loop = _start(train_ds, model_cfg, cfg, resume)
    if pairs is not None and len(pairs) >= 100:
        loop.pairs, loop.val_pairs = pairs.split(min(2000, len(pairs) // 50))
    else:
        loop.pairs = pairs
    if model_cfg.sample_flag and pairs is None:
        logger.warning("model.sample_flag without train.distill: the sampler is not trained")
    info = {"train_size": len(train_ds), "val_size": len(val_ds), "vocab_size": len(train_ds.vocab),
            "parameters": sum(p.numel() for p in loop.model.parameters()),
            "steps_per_epoch": math.ceil(len(train_ds) / cfg.batch_size),
            "first_epoch": loop.epoch + 1,  # a resumed run's first
            "device": str(loop.device), **data_info}
    hashes = np.sort(smiles_hashes(train_ds.smiles))
    source = resume if resume is not None else cfg.init_from
    if source is not None and (theirs := training_hashes(source)) is not None:
        hashes = np.union1d(hashes, theirs)  # a fine-tune has trained on its start's molecules
    facts = {"train_hashes": torch.from_numpy(hashes), "info": info,
             "ring_sizes": dataset_ring_sizes(train_ds)}
    for cb in callbacks:
        cb.on_train_start(info)
    t0 = time.perf_counter()
    out_of_time = lambda: bool(cfg.max_minutes) and time.perf_counter() - t0 > cfg.max_minutes * 60  # noqa: E731
    stopped_early, first_step = False, loop.step
    while loop.epoch < cfg.epochs:
        loop.model.train()
        rng = np.random.default_rng([cfg.seed, loop.epoch])
        for idx in bucketed_batches(train_ds.lengths, cfg.batch_size, rng):
            metrics = train_step(loop, train_ds, idx, cfg)
            for cb in callbacks:
                cb.on_batch_end(loop.step, metrics)
            if cfg.lr_fit_to_time and cfg.max_minutes and loop.step % 20 == 0:
                loop.total_steps = fitted_steps(loop.step, info["steps_per_epoch"] * cfg.epochs,
                                                loop.step - first_step, time.perf_counter() - t0,
                                                cfg.max_minutes)
            if out_of_time():
                break
        loop.epoch += 1
        val, _ = _end_epoch(loop, val_ds, cfg, model_cfg, facts, time.perf_counter() - t0)
        for cb in callbacks:
            cb.on_epoch_end(loop.epoch, val)
        if loop.bad_epochs >= cfg.patience:
            stopped_early = True
            logger.info("early stopping after epoch %d", loop.epoch)
            break
        if out_of_time():
            logger.info("time budget of %.1f min reached after epoch %d", cfg.max_minutes, loop.epoch)
            break
    if cfg.prior_codes:
        _store_codes(loop, train_ds, cfg)
    loop.model.eval()
    out_dir = Path(cfg.out_dir)
    result = TrainResult(train_ds.vocab, loop.history, out_dir / "last.pt", out_dir / "best.pt",
                         stopped_early, time.perf_counter() - t0)
    for cb in callbacks:
        cb.on_train_end(result)
    return result


def _store_codes(loop: _Loop, train_ds: EncodedDataset, cfg: TrainConfig) -> None:
    final = {k: v.detach().clone() for k, v in loop.model.state_dict().items()}
    for path in (Path(cfg.out_dir) / "best.pt", Path(cfg.out_dir) / "last.pt"):
        if path.exists():
            _add_prior_codes(loop.model, path, train_ds, cfg, loop.device)
    loop.model.load_state_dict(final)
    logger.info("stored %d posterior codes as the sampling prior",
                min(cfg.prior_codes, len(train_ds)))


def train_model(
    data_cfg: DataConfig,
    model_cfg: ModelConfig,
    cfg: TrainConfig,
    callbacks: Sequence[Callback] = (),
    resume: str | Path | None = None,
    data_progress=None,
) -> TrainResult:
    """Prepare ``data_cfg.path`` (cached), split train/validation, and ``fit``.

    Starting from a model (``cfg.init_from`` or ``resume``), the data is encoded in its
    vocabulary (molecules with other tokens dropped and counted), and a fine-tune keeps its
    architecture and conditions (``model_cfg`` may only add conditions to an unconditional
    model), so ``molvae train --data mine.csv --init-from MODEL`` needs nothing else."""
    out = Path(cfg.out_dir)
    new_folder = not out.exists()
    check_out_dir(cfg, resume)
    try:
        return _prepare_and_fit(data_cfg, model_cfg, cfg, callbacks, resume, data_progress)
    except BaseException:
        if new_folder and out.is_dir() and not any(out.iterdir()):
            out.rmdir()  # a run that wrote nothing leaves no empty folder behind
        raise


def _prepare_and_fit(data_cfg, model_cfg, cfg, callbacks, resume, data_progress) -> TrainResult:
    source = resume if resume is not None else cfg.init_from
    if cfg.distill is not None:
        pairs_file(cfg.distill)  # before the data is prepared
    vocab = None
    if source is not None:
        state = read_checkpoint(source)
        vocab = Vocab.from_list(state["vocab"])
        # [model] left at its defaults: the checkpoint's (a fine-tune, and its resume)
        model_cfg = _fine_tune_config(model_cfg, ModelConfig.model_validate(
            state["model_config"]), source)
    wanted = dict.fromkeys([*model_cfg.property_names, *model_cfg.conditions])
    compute = [p for p in wanted if p not in data_cfg.property_columns]  # the rest: data columns
    ds = prepare(data_cfg, vocab, compute_properties=compute, progress=data_progress)
    train_ds, val_ds = split(ds, data_cfg.val_fraction, data_cfg.split_seed)
    if len(train_ds) == 0 or len(val_ds) == 0:
        raise TrainingError(
            f"too few molecules to train on: {len(ds)} usable of {ds.report['rows']} in "
            f"{data_cfg.path}, {len(train_ds)} for training and {len(val_ds)} for validation "
            f"(data.val_fraction {data_cfg.val_fraction:g}); a model wants thousands")
    info = {"data_path": str(data_cfg.path), "data_key": ds.key, **{
        f"data_{k}": v for k, v in ds.report["dropped"].items()}, "data_rows": ds.report["rows"]}
    return fit(train_ds, val_ds, model_cfg, cfg, callbacks, resume, info)


def _fine_tune_config(mine: ModelConfig, theirs: ModelConfig, source) -> ModelConfig:
    """The model config of a fine-tune from a model whose config is ``theirs``: each key
    ``mine`` leaves at its default is theirs (``model.sample_flag = true`` alone adds the
    sampler's weights to the model as it is); ``fit`` checks that the rest fits."""
    default = ModelConfig()
    kept = {k: getattr(theirs, k) for k in ModelConfig.model_fields
            if getattr(mine, k) == getattr(default, k) and k != "steering"}  # refitted, not trained
    if any(getattr(mine, k) != v for k, v in kept.items()):
        logger.info("fine-tuning %s: its architecture and conditions (%s) are kept", source,
                    ", ".join(theirs.conditions) or "none")
    return mine.model_copy(update=kept)


def _config_differs(source, mine: ModelConfig, theirs: ModelConfig) -> CheckpointError:
    keys = [k for k in ModelConfig.model_fields if getattr(mine, k) != getattr(theirs, k)]
    return CheckpointError(
        f"{source}: model config differs from the requested one in "
        + ", ".join(f"model.{k} ({getattr(theirs, k)!r} there, {getattr(mine, k)!r} asked)"
                    for k in keys) + "; leave [model] at its defaults to fine-tune it as it is")
