"""Steering: a request's decoding aimed at its RDKit properties, token by token.

A conditional decoder told "logP 2" writes, from a code drawn near the request, a molecule
near it but not on it (docs/conditional.md). A model fitted with a steering head
(``model.SteeringHead``; ``molvae steer``, ``molvae.steering_fit``) predicts, while the
decoder writes, the properties the finished molecule will have after each possible next
token. Decoding a request then adds ``strength`` x log P(every steered property of the request
within its aim) to the log-probabilities of the decoder's ``TOP_K`` likeliest tokens, and
picks among those alone (a future discriminator, Yang & Klein 2021, "FUDGE"): the decoder
still writes the molecule, the head only chooses among the tokens it would write anyway.
"""

from __future__ import annotations

import math

import torch

from .checkpoint import LoadedModel
from .conditions import TOLERANCE
from .config import GenerateConfig
from .errors import GenerationError

TOP_K = 5  # the decoder's likeliest tokens steering chooses among
AIM = 0.7  # steering aims within this share of each property's hit tolerance of the request


def uses_steer(loaded: LoadedModel, cfg: GenerateConfig) -> float:
    """For a request (``cfg.condition``): ``cfg.condition_steer``, where None means the
    model's stored strength when it has a steering head (else 0, none); steering asked of a
    model without one: GenerationError. Without a request, 0 (as guidance, a strength set for
    requests changes nothing else)."""
    has_head = loaded.model.steering is not None
    if not cfg.condition:
        return 0.0
    if cfg.condition_steer and not has_head:
        raise GenerationError(f"{loaded.path or 'this model'} has no steering head to steer "
                              "requests with: fit one (`molvae steer`), or set "
                              "generate.condition_steer = 0")
    if cfg.condition_steer is not None:
        return cfg.condition_steer
    return float(loaded.sampling.get("condition_steer", 0.0)) if has_head else 0.0


def steered(loaded: LoadedModel, cfg: GenerateConfig, grammar) -> object | None:
    """The decoding constraint for ``cfg``'s request: ``grammar`` (a ring grammar or None)
    with steering added when the request names a property of the model's steering head and
    the strength is above 0; else ``grammar`` itself."""
    strength = uses_steer(loaded, cfg)
    if not cfg.condition or strength == 0 or loaded.model.steering is None:
        return grammar
    space, names = loaded.conditions, loaded.model_config.steering
    targets = space.check(cfg.condition)
    bounds = []
    for name, (lo, hi) in targets.items():
        if name in names:
            k, aim = space.names.index(name), AIM * TOLERANCE.get(name, 0.0)
            bounds.append((names.index(name), (lo - aim - space.mean[k]) / space.std[k],
                           (hi + aim - space.mean[k]) / space.std[k]))
    return Steering(loaded.model.steering, bounds, strength, grammar) if bounds else grammar


class Steering:
    """A request's steering for ``Decoder.generate``'s ``constraint``: ``bounds`` [(column of
    the head, low, high)] (standardized), ``strength``, and the ring grammar (or None)."""

    def __init__(self, head: torch.nn.Module, bounds: list[tuple[int, float, float]],
                 strength: float, grammar=None):
        self.head, self.strength, self.grammar = head, strength, grammar
        self.columns = [c for c, _, _ in bounds]
        self.low = torch.tensor([lo for _, lo, _ in bounds], dtype=torch.float32)
        self.high = torch.tensor([hi for _, _, hi in bounds], dtype=torch.float32)

    def start(self, batch_size: int) -> _SteeringState:
        return _SteeringState(self, batch_size)


class _SteeringState:
    def __init__(self, steering: Steering, batch_size: int):
        self.s, self.n = steering, batch_size
        self.grammar = steering.grammar.start(batch_size) if steering.grammar is not None else None
        self.state: torch.Tensor | None = None  # the head's GRU state, (1, B, size)

    def banned(self, alive: torch.Tensor) -> torch.Tensor | None:
        return self.grammar.banned(alive) if self.grammar is not None else None

    def advance(self, alive: torch.Tensor, tokens: torch.Tensor) -> None:
        if self.grammar is not None:
            self.grammar.advance(alive, tokens)

    def adjust(self, alive: torch.Tensor, last: torch.Tensor, hidden: torch.Tensor,
               logits: torch.Tensor) -> torch.Tensor:
        """The logits of the TOP_K likeliest tokens plus strength x log P(all in aim) of each,
        the others -inf; ``last`` (b,) the tokens just read, ``hidden`` (b, H) the decoder's."""
        s = self.s
        before = None if self.state is None else self.state[:, alive]
        mean, logvar, after = s.head(last[:, None], hidden[:, None].to(logits.dtype), before)
        if self.state is None:
            self.state = after.new_zeros(1, self.n, after.shape[-1])
        self.state[:, alive] = after
        mean, sd = mean[:, 0, :, s.columns], torch.exp(0.5 * logvar[:, 0, :, s.columns])  # (b, V, P)
        inside = (torch.special.ndtr((s.high.to(mean) - mean) / sd)
                  - torch.special.ndtr((s.low.to(mean) - mean) / sd))
        score = torch.log(inside.clamp_min(1e-6)).sum(-1)  # (b, V)
        lp = torch.log_softmax(logits, dim=-1)
        top = lp.topk(min(TOP_K, lp.shape[-1]), dim=-1).values[:, -1:]
        return torch.where(lp >= top, lp + s.strength * score, -math.inf)
