"""A conditional model's steering head, fitted on its own request draws (``molvae steer``).

Random requests (one to three of the model's RDKit conditions, a value or a range near a
stored code's molecule), codes drawn for each as a request draws them, the molecules the
decoder writes from them (as requests decode, unsteered), and those molecules' RDKit
properties. The head (``model.SteeringHead``) learns, from the tokens written so far and the
decoder's hidden state, the finished molecule's properties for the token written next
(Gaussian negative log-likelihood, every position); ``molvae.steering`` decodes with it.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from . import chem, generate, parallel
from .checkpoint import LoadedModel, check_sampling, read_checkpoint, save_checkpoint
from .errors import GenerationError
from .latent import LatentPrior, check_loaded, device_of
from .model import SteeringHead
from .vocab import PAD_ID

REQUESTS_PER_JOB = 32
CODES_PER_REQUEST = 32
Progress = Callable[[str, int], Callable[[int], object]]  # (stage, total) -> update(k)


def steerable(loaded: LoadedModel) -> list[str]:
    """The conditions a steering head can predict: the RDKit properties among a conditional
    model's conditions (a data column is not computed for a new molecule); GenerationError
    for a model that cannot be steered."""
    where = loaded.path or "this model"
    if device_of(loaded).type != "cpu":  # CPU work: many small steps, and forked workers
        raise GenerationError(f"{where}: fit a steering head on a model loaded on the CPU "
                              "(`molvae steer` does)")
    if loaded.conditions is None:
        raise GenerationError(f"{where} is not a conditional model: there is no request to steer to")
    names = [n for n in loaded.conditions.names if n in chem.PROPERTIES]
    if not names:
        raise GenerationError(f"{where}: none of its conditions is an RDKit property "
                              f"({', '.join(loaded.conditions.names)}); nothing to steer")
    if loaded.prior is None or loaded.prior.get("properties") is None:
        raise GenerationError(f"{where}: its prior codes carry no property values (requests draw "
                              "codes by them); store them with `molvae prior TRAIN_FILE --model MODEL`")
    return names


def _requests(loaded: LoadedModel, names: list[str], rng: np.random.Generator
              ) -> list[dict[str, tuple[float, float]]]:
    space, props = loaded.conditions, loaded.prior["properties"].double().numpy()
    bounds = {n: np.quantile(props[:, space.names.index(n)], [0.01, 0.99]) for n in names}
    out = []
    for _ in range(REQUESTS_PER_JOB):
        asked = rng.choice(names, size=min(len(names), rng.choice([1, 2, 3], p=[0.6, 0.25, 0.15])),
                           replace=False)
        row, request = props[rng.integers(len(props))], {}
        for name in asked:
            k = space.names.index(name)
            v = float(np.clip(row[k] + 0.5 * space.std[k] * rng.normal(), *bounds[name]))
            w = 0.5 * space.std[k] * (rng.random() < 0.3)  # a range 30% of the time
            request[str(name)] = (v - w, v + w)
        out.append(request)
    return out


@torch.no_grad()
def _collect_job(job: tuple, loaded: LoadedModel | None = None) -> tuple:
    """One job's requests -> codes, condition inputs, token rows, property values."""
    loaded = loaded or generate._WORKER_MODEL
    seed, names = job
    rng, gen = np.random.default_rng(seed), torch.Generator().manual_seed(seed)
    z, cond, requests = [], [], _requests(loaded, names, rng)
    # decoded as a request decodes (width, greedy, guidance), unsteered
    cfg = generate.settings(condition=requests[0], condition_steer=0)
    width = generate.uses_width(loaded, cfg)
    for request in requests:
        latent = LatentPrior(loaded, "posterior", gen, width=width, targets=request)
        z.append(latent(CODES_PER_REQUEST))
        cond.append(latent.condition(CODES_PER_REQUEST)[0])
    z, cond = torch.cat(z), torch.cat(cond)
    pairs = generate.decode_latent(loaded, z, cfg, generate.uses_greedy(loaded, cfg), seed, cond)
    rows = chem.score_smiles([smi for _, smi in pairs], filters=(), property_names=names, workers=1)
    values = np.array([[r.get(n, np.nan) for n in names] for r in rows], dtype=np.float32)
    ok = np.flatnonzero(np.isfinite(values).all(1))
    ids = [loaded.vocab.to_ids(pairs[i][0]) for i in ok]
    tokens = np.full((len(ids), max(map(len, ids), default=2)), PAD_ID,
                     dtype=np.uint8 if len(loaded.vocab) < 256 else np.int16)
    for i, row in enumerate(ids):
        tokens[i, : len(row)] = row
    return z[ok].half(), cond[ok].half(), tokens, values[ok]


def collect(loaded: LoadedModel, n: int, seed: int = 0, workers: int | None = None,
            progress: Progress | None = None) -> dict[str, torch.Tensor]:
    """About ``n`` request draws (molecules RDKit reads): {"z", "condition", "tokens",
    "values"} (values in the units of ``steerable(loaded)``), over worker processes."""
    check_loaded(loaded, "steering_fit.collect")
    names = steerable(loaded)
    size = REQUESTS_PER_JOB * CODES_PER_REQUEST
    seeds = np.random.default_rng(seed).integers(0, 2**31, math.ceil(n / size))
    jobs = [(int(s), names) for s in seeds]
    update = progress("drawing requests", len(jobs) * size) if progress else None
    parts = []
    for part in parallel.imap_forked(_collect_job, jobs, parallel.resolve_workers(workers),
                                     generate._start_worker, (loaded,), (loaded,)):
        parts.append(part)
        if update:
            update(size)
    width = max(p[2].shape[1] for p in parts)
    tokens = np.concatenate([np.pad(p[2], ((0, 0), (0, width - p[2].shape[1]))) for p in parts])
    return {"z": torch.cat([p[0] for p in parts]), "condition": torch.cat([p[1] for p in parts]),
            "tokens": torch.from_numpy(tokens), "values": torch.from_numpy(np.concatenate(
                [p[3] for p in parts])), "names": names}


def _loss(loaded: LoadedModel, head: SteeringHead, draws: dict, idx: torch.Tensor,
          target: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean Gaussian NLL over the rows ``idx`` and their positions, and (B, P) the absolute
    error (standardized) of the mean predicted for each row's last choice (<eos>)."""
    tokens = draws["tokens"][idx].long()
    tokens = tokens[:, : int((tokens != PAD_ID).sum(1).max())]
    with torch.no_grad():
        hidden = loaded.model.decoder(draws["z"][idx].float(), tokens,
                                      draws["condition"][idx].float(), hidden=True)
    mean, logvar, _ = head(tokens[:, :-1], hidden)
    chosen = tokens[:, 1:, None, None].expand(-1, -1, 1, mean.shape[-1])
    mean, logvar = mean.gather(2, chosen)[:, :, 0], logvar.gather(2, chosen)[:, :, 0]  # (B, L, P)
    mask = (tokens[:, 1:] != PAD_ID).float()[..., None]
    t = target[idx][:, None]
    nll = 0.5 * (logvar + (t - mean) ** 2 / logvar.exp())
    last = (tokens[:, 1:] != PAD_ID).sum(1) - 1
    return (nll * mask).sum() / mask.sum() / mean.shape[-1], (mean[torch.arange(len(idx)), last]
                                                              - target[idx]).abs()


def fit(loaded: LoadedModel, draws: dict, epochs: int = 4, batch_size: int = 256, lr: float = 2e-3,
        seed: int = 0, threads: int | None = None, progress: Progress | None = None
        ) -> tuple[SteeringHead, dict]:
    """A steering head fitted on ``draws`` (``collect``; a model on the CPU, ``steerable``);
    2% (at most 2,000) held out. Returns
    the head and a report: held-out NLL, and the mean absolute error of the properties the
    head predicts at each molecule's end, in their units ({name: error})."""
    steerable(loaded)
    space, names = loaded.conditions, draws["names"]
    k = [space.names.index(n) for n in names]
    mean, std = torch.tensor(space.mean)[k].float(), torch.tensor(space.std)[k].float()
    target = (draws["values"] - mean) / std
    gen = torch.Generator().manual_seed(seed)
    order = torch.randperm(len(target), generator=gen)
    held, train = order[: min(2000, len(order) // 50)], order[min(2000, len(order) // 50):]
    if len(held) == 0 or len(train) < batch_size:
        raise GenerationError(f"{len(order)} draws to fit a steering head on: draw more (at least "
                              f"{max(50, batch_size * 50 // 49 + 1)})")
    with torch.random.fork_rng(), parallel.torch_threads(threads or parallel.resolve_workers(None)):
        torch.manual_seed(seed)  # the head's initial weights (the global stream restored after)
        head = SteeringHead(len(loaded.vocab), loaded.model_config.decoder_hidden_size, len(names))
        opt = torch.optim.Adam(head.parameters(), lr=lr)
        steps = epochs * (len(train) // batch_size)
        sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=steps)
        update = progress("fitting the steering head", steps) if progress else None
        for _ in range(epochs):
            shuffled = train[torch.randperm(len(train), generator=gen)]
            for s in range(0, len(shuffled) - batch_size + 1, batch_size):
                loss, _ = _loss(loaded, head, draws, shuffled[s : s + batch_size], target)
                opt.zero_grad()
                loss.backward()
                opt.step()
                sched.step()
                if update:
                    update(1)
        head.eval()
        with torch.no_grad():
            nll, err = _loss(loaded, head, draws, held, target)
    errors = (err.mean(0) * std).tolist()
    return head, {"held_out": len(held), "nll": round(float(nll), 4),
                  "end_mae": {n: round(e, 4) for n, e in zip(names, errors, strict=True)}}


def store(src: str | Path, dest: str | Path, head: SteeringHead, names: list[str],
          strength: float, report: dict | None = None) -> Path:
    """Write the model ``src`` with ``head`` (predicting ``names``) and ``strength`` as its
    requests' default steering (``generate.condition_steer``) to ``dest`` (may be ``src``)."""
    state = read_checkpoint(src)
    like = state["model_state"]["decoder.out.weight"].dtype  # a half-precision export stays half
    state["model_state"] = {**{k: v for k, v in state["model_state"].items()
                               if not k.startswith("steering.")},
                            **{f"steering.{k}": v.detach().to(like) for k, v in head.state_dict().items()}}
    state["model_config"] = {**state["model_config"], "steering": list(names)}
    state["sampling"] = check_sampling({**state.get("sampling", {}), "condition_steer": strength})
    state["info"] = {**state.get("info", {}), "steering": report or {}}
    save_checkpoint(Path(dest), state)
    return Path(dest)
