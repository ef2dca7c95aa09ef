"""The checkpoint schema in one place: what a checkpoint holds, how it is written, read,
exported and given a sampling prior, and ``LoadedModel``, what generation reads from it.

A checkpoint is plain data (``torch.load(weights_only=True)``), no pickled classes:
    format_version   int, FORMAT_VERSION
    model_config, train_config   dicts: ModelConfig, TrainConfig of the run that wrote it
    vocab            list[str], token id -> SELFIES symbol
    model_state      the SelfiesVAE state dict (with a steering head: model_config "steering")
    property_stats   {name: [mean, std]} of the property head's targets
    train_hashes     int64 tensor, sorted hashes of the training SMILES (novelty); or
    train_hashes_file  {"name", "sha256", "count"}: the same in a .npy file beside it (with
                     both keys, the hashes are the file's plus the inline ones: a fine-tune
                     that shares its base model's file and adds a few molecules)
    history          list of per-epoch validation metrics
    info             {str: int | float | str | dict}: data and run facts
    prior            optional {"mu", "logvar": (M, Z) float16, "width": float}; or 8-bit:
                     "mu", "logvar" (M, Z) uint8 with "mu_grid", "logvar_grid" (2, Z): offset, step
    ring_sizes       optional list[int]: ring sizes of the training data (the ring grammar)
    sampling         optional {name: value}, SAMPLING_KINDS: how this model samples by default
                     (condition_*: for requests; sampler_width: its sampler weights' draws)
    conditions       optional (a conditional model) {"names", "mean", "std", "low", "high"}:
                     lists, the ConditionSpace; its prior then adds "properties" (M, K)
                     float32, the values of those properties for the codes' molecules
  training checkpoints add: optimizer_state, scheduler_state, epoch, step, best_val,
  bad_epochs, rng (what ``resume`` needs; ``export_model`` drops them)."""

from __future__ import annotations

import contextlib
import hashlib
import logging
import math
import os
import secrets
import zipfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from pydantic import ValidationError

from .conditions import ConditionSpace
from .config import SHIPPED_MODEL, ModelConfig
from .errors import CheckpointError, TrainingError
from .model import SelfiesVAE, build_model
from .vocab import Vocab

logger = logging.getLogger(__name__)

FORMAT_VERSION = 1
TRAINING_ONLY = ("optimizer_state", "scheduler_state", "rng")


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
    ring_sizes: list[int] | None = None  # ring sizes of the training data (the ring grammar)
    sampling: dict = field(default_factory=dict)  # the model's own sampling defaults: "greedy"
    conditions: ConditionSpace | None = None  # a conditional model's properties

    def is_novel(self, smiles: Sequence[str]) -> np.ndarray:
        """True where a canonical SMILES is not in the training set (needs train_hashes)."""
        if self.train_hashes is None or len(self.train_hashes) == 0:
            return np.ones(len(smiles), dtype=bool)
        h = smiles_hashes(smiles)
        pos = np.searchsorted(self.train_hashes, h).clip(0, len(self.train_hashes) - 1)
        return self.train_hashes[pos] != h

    def novelty_test(self) -> Callable[[Sequence[str]], np.ndarray] | None:
        """``is_novel``, or None without training-set hashes: novelty unknown, not 100%."""
        return self.is_novel if self.train_hashes is not None else None


def smiles_hashes(smiles: Sequence[str]) -> np.ndarray:
    """64-bit blake2b hashes of SMILES strings (compact training-set membership)."""
    digests = (hashlib.blake2b(s.encode(), digest_size=8).digest() for s in smiles)
    return np.array([int.from_bytes(d, "little", signed=True) for d in digests], dtype=np.int64)


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise TrainingError("device = 'cuda' but no CUDA device is available")
    return torch.device(name)


def save_checkpoint(path: Path, state: dict) -> None:
    """Atomic write (see ``_atomic_write``), so a kill never leaves a half checkpoint."""
    _atomic_write(Path(path), lambda fh: torch.save(state, fh))


def _atomic_write(path: Path, write) -> None:
    """``write(file)`` into a fresh temp file in ``path``'s folder, then rename it to ``path``.
    The temp name is new (O_EXCL, never an existing name or a planted link) and gets the
    user's usual mode (0o666 & umask); temp files of writers that were killed (SIGKILL
    leaves them) are removed on the next write."""
    path.parent.mkdir(parents=True, exist_ok=True)
    _remove_stale_temps(path)
    tmp = path.parent / f".{path.name}.{secrets.token_hex(6)}.tmp{os.getpid()}"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0), 0o666)
    try:
        with os.fdopen(fd, "wb") as fh:
            write(fh)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def _remove_stale_temps(path: Path) -> None:
    for tmp in path.parent.glob(f".{path.name}.*.tmp*"):
        pid = tmp.name.rsplit(".tmp", 1)[-1]
        if pid.isdigit() and not _alive(int(pid)):
            with contextlib.suppress(OSError):
                tmp.unlink()


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def read_checkpoint(path: str | Path) -> dict:
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: {'a folder' if path.is_dir() else 'model file not found'}")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except (RuntimeError, EOFError, zipfile.BadZipFile, ValueError, OSError) as exc:
        first = (str(exc).strip() or type(exc).__name__).splitlines()[0].split(". ")[0]
        cut = "; cut short or damaged: copy it again" * ("zip archive" in first or isinstance(exc, EOFError))
        raise CheckpointError(f"{path}: not a readable molvae checkpoint ({first[:160]}){cut}") from None
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


def load_model(path: str | Path | None = None, device: str | torch.device = "cpu") -> LoadedModel:
    """Load a checkpoint for inference (default: the shipped model); a bad one: CheckpointError."""
    path = SHIPPED_MODEL if path is None else path
    state = read_checkpoint(path)
    try:
        mcfg = ModelConfig.model_validate(state["model_config"])
        vocab = Vocab.from_list(state["vocab"])
        model = build_model(mcfg, len(vocab))
        model.load_state_dict(state["model_state"])
        conditions = (ConditionSpace.from_record(state["conditions"])
                      if mcfg.conditions else None)
        if conditions is not None and list(conditions.names) != mcfg.conditions:
            raise ValueError("condition names differ from the model config's")
    except (ValidationError, ValueError, RuntimeError, KeyError) as exc:
        first = str(exc).strip().splitlines()[0]
        raise CheckpointError(f"{path}: incompatible checkpoint ({first[:160]})") from None
    model.to(device).eval()
    stats = {k: (float(m), float(s)) for k, (m, s) in state.get("property_stats", {}).items()}
    return LoadedModel(
        model=model, vocab=vocab, model_config=mcfg, train_config=state.get("train_config", {}),
        property_stats=stats, train_hashes=_read_hashes(state, Path(path)),
        history=state.get("history", []), info=state.get("info", {}), path=Path(path),
        prior=_read_prior(state.get("prior"), mcfg.latent_size, path, len(mcfg.conditions)),
        ring_sizes=_read_ring_sizes(state.get("ring_sizes"), path),
        sampling=_read_sampling(state.get("sampling"), path),
        conditions=conditions,
    )


# sampling defaults a model may store: name -> the values allowed (type included)
SAMPLING_KINDS = {"greedy": lambda v: type(v) is bool,
                  "refine": lambda v: type(v) is int and 0 <= v <= 10,
                  "condition_width": lambda v: type(v) is float and 0 < v < math.inf,
                  "sampler_width": lambda v: type(v) is float and 0 < v < math.inf,
                  "condition_guidance": lambda v: type(v) is float and 0 <= v <= 20,
                  "condition_steer": lambda v: type(v) is float and 0 <= v <= 100}


def check_sampling(sampling: dict) -> dict:
    """Sampling defaults to store in a model (ints taken for floats); ValueError names bad ones."""
    out = {k: float(v) if k.endswith(("_width", "_guidance", "_steer")) and type(v) is int else v
           for k, v in sampling.items()}
    if bad := [f"{k}={v!r}" for k, v in out.items() if not SAMPLING_KINDS.get(k, lambda _: False)(v)]:
        raise ValueError(f"bad sampling defaults {', '.join(bad)} ({', '.join(SAMPLING_KINDS)}; "
                         "refine 0-10, widths > 0, condition_guidance 0-20, condition_steer 0-100)")
    return out


def _read_sampling(sampling, path) -> dict:
    if sampling is None:
        return {}
    if not isinstance(sampling, dict) or not all(
            SAMPLING_KINDS.get(k, lambda _: False)(v) for k, v in sampling.items()):
        raise CheckpointError(f"{path}: incompatible checkpoint (malformed sampling defaults)")
    return dict(sampling)


def _read_ring_sizes(sizes, path) -> list[int] | None:
    if sizes is None:
        return None
    if not isinstance(sizes, list) or not sizes or not all(
            isinstance(k, int) and not isinstance(k, bool) and 3 <= k <= 100 for k in sizes):
        raise CheckpointError(f"{path}: incompatible checkpoint (malformed ring_sizes)")
    return sorted(sizes)


def _read_prior(prior, latent_size: int, path, num_conditions: int = 0) -> dict | None:
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
    codes = {}
    for k in ("mu", "logvar"):
        x = prior[k]
        if x.dtype == torch.uint8:  # 8-bit codes: per-dimension offset and step
            grid = prior.get(f"{k}_grid")
            if not isinstance(grid, torch.Tensor) or grid.shape != (2, latent_size):
                raise CheckpointError(f"{path}: incompatible checkpoint (malformed posterior prior)")
            codes[k] = grid[0].float() + x.float() * grid[1].float()
        else:
            codes[k] = x.float()
    props = prior.get("properties")
    if props is not None:
        if not isinstance(props, torch.Tensor) or props.shape != (len(codes["mu"]), num_conditions):
            raise CheckpointError(f"{path}: incompatible checkpoint (malformed prior properties)")
        codes["properties"] = props.float()
    return {**codes, "width": float(width)}


def _quantize(x: torch.Tensor) -> dict[str, torch.Tensor]:
    """(M, Z) -> uint8 codes and a (2, Z) grid (offset, step) per dimension: 256 levels
    between each dimension's min and max (error <= step / 2)."""
    x = x.float()
    lo, hi = x.min(0).values, x.max(0).values
    step = ((hi - lo) / 255).clamp(min=1e-8)
    q = torch.round((x - lo) / step).clamp(0, 255).to(torch.uint8)
    return {"codes": q, "grid": torch.stack([lo, step])}


def export_model(src: str | Path, dest: str | Path, *, half: bool = False,
                 hashes_apart: bool = False, max_codes: int | None = None,
                 codes_8bit: bool = False, width: float | None = None,
                 sampling: dict | None = None) -> Path:
    """Strip optimizer and RNG state from a training checkpoint (a small inference file).

    ``half``: weights stored in float16 (loaded back into float32). ``hashes_apart``: the
    training-set hashes go to ``train_hashes_<digest>.npy`` beside ``dest`` (written once,
    shared by every model trained on the same data) and the checkpoint names that file.
    ``max_codes``: keep a seeded random subset of the stored prior codes. ``codes_8bit``:
    store them as 8-bit per-dimension grids (a quarter of float32, half of float16).
    ``width``: the prior width sampling uses by default; ``sampling``: defaults stored with
    the model where the config leaves them unset (``check_sampling``; condition_*: a
    conditional model's, for requests; condition_steer: one with a steering head), merged into
    those the source stores."""
    sampling, state = check_sampling(sampling or {}), read_checkpoint(src)  # before any work
    mcfg, asked = state["model_config"], ", ".join(k for k in sampling if k.startswith("condition_"))
    if asked and not mcfg.get("conditions"):
        raise CheckpointError(f"{src} is not conditional: {asked}: defaults for a model's requests")
    if sampling.get("condition_steer") and not mcfg.get("steering"):
        raise CheckpointError(f"{src} has no steering head to set a strength of (`molvae steer` fits one)")
    if "sampler_width" in sampling and not mcfg.get("sample_flag"):
        raise CheckpointError(f"{src} has no sampler weights (model.sample_flag) to set a width of")
    keep, dest = {k: v for k, v in state.items() if k not in TRAINING_ONLY}, Path(dest)
    if half:
        keep["model_state"] = {k: v.half() if v.is_floating_point() else v
                               for k, v in keep["model_state"].items()}
    if hashes_apart and isinstance(keep.get("train_hashes"), torch.Tensor):
        keep["train_hashes_file"] = write_hashes(keep.pop("train_hashes").numpy(), dest.parent)
    prior = keep.get("prior")
    if max_codes is not None and prior is not None and len(prior["mu"]) > max_codes:
        pick = torch.randperm(len(prior["mu"]), generator=torch.Generator().manual_seed(0))
        pick = pick[:max_codes].sort().values
        keep["prior"] = {**prior, **{k: prior[k][pick] for k in ("mu", "logvar", "properties")
                                     if k in prior}}
    if keep.get("prior") is not None and (codes_8bit or width is not None):
        n_cond = len(keep.get("conditions", {}).get("names", ()))
        prior = _read_prior(keep["prior"], int(keep["prior"]["mu"].shape[1]), src, n_cond)
        keep["prior"] = {"width": float(width) if width is not None else prior["width"]}
        if "properties" in prior:
            keep["prior"]["properties"] = prior["properties"].half() if half else prior["properties"]
        for k in ("mu", "logvar"):
            if codes_8bit:
                packed = _quantize(prior[k])
                keep["prior"][k], keep["prior"][f"{k}_grid"] = packed["codes"], packed["grid"]
            else:
                keep["prior"][k] = prior[k].half()
    if sampling:
        keep["sampling"] = {**keep.get("sampling", {}), **sampling}
    save_checkpoint(dest, keep)
    return dest


def write_hashes(hashes: np.ndarray, folder: Path) -> dict:
    """Store sorted training-set hashes as ``train_hashes_<digest>.npy`` in ``folder``
    (kept if already there) and return the reference a checkpoint holds."""
    hashes = np.ascontiguousarray(hashes, dtype=np.int64)
    digest = hashlib.sha256(hashes.tobytes()).hexdigest()
    path = Path(folder) / f"train_hashes_{digest[:16]}.npy"
    if not path.is_file():
        _atomic_write(path, lambda fh: np.save(fh, hashes, allow_pickle=False))
    return {"name": path.name, "sha256": digest, "count": int(len(hashes))}


def share_hashes(path: str | Path, other: str | Path) -> dict:
    """Let the model at ``path`` judge novelty by the training-set hashes of ``other`` (a
    model beside it, e.g. the one it was fine-tuned from) plus its own: it names other's
    file and keeps inline only the hashes of its molecules that other did not train on (a
    fine-tune on part of the same data adds kilobytes, not a file). Returns the reference
    now stored in ``path`` with ``extra``, the number kept inline."""
    path, other = Path(path), Path(other)
    state = read_checkpoint(path)
    mine = _read_hashes(state, path)
    theirs = _read_hashes(read_checkpoint(other), other)
    ref = read_checkpoint(other).get("train_hashes_file")
    if theirs is None or not isinstance(ref, dict) or other.parent.resolve() != path.parent.resolve():
        raise CheckpointError(f"{other}: needs its training-set hashes in a file beside {path}")
    if mine is None:
        raise CheckpointError(f"{path}: has no training-set hashes to merge with {other}'s")
    extra = np.setdiff1d(mine, theirs)
    state.pop("train_hashes", None)
    if len(extra):
        state["train_hashes"] = torch.from_numpy(extra)
    state["train_hashes_file"] = dict(ref)
    save_checkpoint(path, state)
    return {**ref, "extra": int(len(extra))}


def companion_files(path: str | Path) -> list[Path]:
    """Files a checkpoint names beside itself (its training-set hashes): copy them with it."""
    ref = read_checkpoint(path).get("train_hashes_file")
    file = Path(path).parent / str(ref.get("name", "")) if isinstance(ref, dict) else None
    return [file] if file is not None and file.is_file() else []


def training_hashes(path: str | Path) -> np.ndarray | None:
    """The checkpoint's sorted training-set hashes (inline, in its file or both), or None."""
    return _read_hashes(read_checkpoint(path), Path(path))


def _read_hashes(state: dict, path: Path) -> np.ndarray | None:
    """The training-set hashes: in the checkpoint, in the file it names beside it, or both
    (then their union; None when the named file is missing)."""
    inline = state.get("train_hashes")
    inline = inline.numpy() if isinstance(inline, torch.Tensor) else None
    ref = state.get("train_hashes_file")
    if not isinstance(ref, dict):
        return inline
    # a missing file gives None, not the inline part alone (it would call known molecules novel)
    hashes = _hashes_file(ref, path)
    if hashes is None or inline is None:
        return hashes
    return np.union1d(hashes, inline)


def _hashes_file(ref: dict, path: Path) -> np.ndarray | None:
    file = path.parent / str(ref.get("name", ""))
    if not file.is_file():
        logger.warning("%s: training-set hashes %s not found beside it (copy it there); "
                       "novelty cannot be judged", path, file.name)
        return None
    try:
        hashes = np.load(file, allow_pickle=False)
    except (OSError, ValueError) as exc:
        raise CheckpointError(f"{file}: unreadable training-set hashes ({exc})") from None
    if hashlib.sha256(np.ascontiguousarray(hashes).tobytes()).hexdigest() != ref.get("sha256"):
        raise CheckpointError(f"{file}: training-set hashes do not match the checkpoint's")
    return hashes


def store_prior(src: str | Path, prior: dict, dest: str | Path | None = None) -> Path:
    """Write ``src`` with ``prior`` (from ``generate.fit_prior``: codes and kernel width) to
    ``dest`` (default: in place, atomically)."""
    state = read_checkpoint(src)
    state["prior"] = {**{k: prior[k].half().cpu() for k in ("mu", "logvar")},
                      "width": float(prior.get("width", 1.0))}
    if "properties" in prior:
        state["prior"]["properties"] = prior["properties"].float().cpu()
    if prior.get("ring_sizes"):
        state["ring_sizes"] = [int(k) for k in prior["ring_sizes"]]
    dest = Path(dest or src)
    save_checkpoint(dest, state)
    return dest


def model_record(model: SelfiesVAE, model_cfg: ModelConfig, train_cfg: dict, vocab: Vocab,
                 facts: dict) -> dict:
    """The inference part of a checkpoint (every key but the TRAINING_ONLY ones). ``facts``:
    ``property_stats`` {name: (mean, std)}, ``train_hashes`` (sorted int64 tensor),
    ``history``, ``info``, and optionally ``ring_sizes`` and ``conditions`` (a
    ConditionSpace)."""
    property_stats, ring_sizes = facts["property_stats"], facts.get("ring_sizes")
    conditions, info = facts.get("conditions"), facts["info"]
    return {
        "format_version": FORMAT_VERSION,
        "model_config": model_cfg.model_dump(mode="json"),
        "train_config": train_cfg,
        "vocab": vocab.to_list(),
        "model_state": {k: v.detach().cpu() for k, v in model.state_dict().items()},
        "property_stats": {k: [m, s] for k, (m, s) in property_stats.items()},
        "train_hashes": facts["train_hashes"],
        "history": facts["history"],
        "info": {k: v for k, v in info.items() if isinstance(v, (int, float, str))},
        **({"ring_sizes": list(ring_sizes)} if ring_sizes else {}),
        **({"conditions": conditions.to_record()} if conditions is not None else {}),
    }


def resume_record(optimizer: torch.optim.Optimizer, scheduler, device: torch.device, *,
                  epoch: int, step: int, best_val: float, bad_epochs: int) -> dict:
    """What ``fit(resume=...)`` needs on top of ``model_record`` to continue exactly."""
    rng = {"torch": torch.get_rng_state()}
    if device.type == "cuda":
        rng["cuda"] = torch.cuda.get_rng_state()
    return {"optimizer_state": optimizer.state_dict(), "scheduler_state": scheduler.state_dict(),
            "epoch": epoch, "step": step, "best_val": best_val, "bad_epochs": bad_epochs,
            "rng": rng}
