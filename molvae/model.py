"""SELFIES VAE: bi-GRU encoder -> diagonal Gaussian -> autoregressive GRU decoder.

Sees token ids only, never strings. B = batch, L = tokens (with <bos>/<eos>), V = vocab,
Z = latent size, H = hidden size.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Protocol

import torch
import torch.nn.functional as F
from torch import nn

from .config import ModelConfig
from .vocab import BOS_ID, EOS_ID, PAD_ID


class DecodeConstraint(Protocol):
    """A decoding grammar (``molvae.grammar.RingSizeConstraint``): ``start(B)`` returns a
    state with ``banned(alive) -> (b', V) bool | None`` and ``advance(alive, tokens)``."""

    def start(self, batch_size: int): ...


class Encoder(nn.Module):
    """Token embedding -> bidirectional GRU -> (B, 2H) summary of the molecule.

    Each layer runs a forward GRU on the padded batch and a backward GRU on each sequence
    reversed within its own length, so padding never enters either direction. This is an
    exact bi-GRU without pack_padded_sequence, which is ~3.5x slower on CPU.
    """

    def __init__(self, vocab_size: int, embedding_size: int, hidden_size: int, num_layers: int,
                 dropout: float = 0.0):
        super().__init__()
        self.embedding = nn.Embedding(vocab_size, embedding_size, padding_idx=PAD_ID)
        sizes = [embedding_size] + [2 * hidden_size] * (num_layers - 1)
        self.forward_layers = nn.ModuleList(nn.GRU(s, hidden_size, batch_first=True) for s in sizes)
        self.backward_layers = nn.ModuleList(nn.GRU(s, hidden_size, batch_first=True) for s in sizes)
        self.dropout = nn.Dropout(dropout)
        self.output_size = 2 * hidden_size

    def forward(self, tokens: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """tokens (B, L), lengths (B,) -> (B, 2H)."""
        b, L = tokens.shape
        pos = torch.arange(L, device=tokens.device)
        rev = lengths.to(tokens.device)[:, None] - 1 - pos[None, :]  # (B, L)
        rev = torch.where(rev >= 0, rev, pos[None, :])  # an involution; pads stay in place
        last = (lengths.to(tokens.device) - 1).clamp(min=0)
        rows = torch.arange(b, device=tokens.device)
        x = self.embedding(tokens)  # (B, L, E)
        n = len(self.forward_layers)
        for i, (fwd, bwd) in enumerate(zip(self.forward_layers, self.backward_layers, strict=True)):
            idx = rev[..., None].expand(-1, -1, x.shape[-1])
            out_f, _ = fwd(x)  # (B, L, H)
            out_b, _ = bwd(x.gather(1, idx))  # (B, L, H), reversed frame
            if i < n - 1:
                out_b = out_b.gather(1, rev[..., None].expand(-1, -1, out_b.shape[-1]))
                x = self.dropout(torch.cat([out_f, out_b], dim=-1))
        return torch.cat([out_f[rows, last], out_b[rows, last]], dim=-1)


def with_condition(x: torch.Tensor, condition: torch.Tensor | None, size: int) -> torch.Tensor:
    """(B, D) -> (B, D + size): ``x`` followed by the condition input (2K numbers:
    standardized values and their given-flags, ``molvae.conditions``); None: all zero, the
    unconditional model."""
    if size == 0:
        return x
    if condition is None:
        condition = x.new_zeros(x.shape[0], size)
    return torch.cat([x, condition.to(x.dtype)], dim=-1)


class LatentHead(nn.Module):
    """(B, 2H) [+ condition (B, C)] -> mean and log-variance of q(z|x[, c]), each (B, Z)."""

    def __init__(self, in_size: int, latent_size: int, condition_size: int = 0):
        super().__init__()
        self.mu = nn.Linear(in_size + condition_size, latent_size)
        self.logvar = nn.Linear(in_size + condition_size, latent_size)
        self.condition_size = condition_size

    def forward(self, h: torch.Tensor, condition: torch.Tensor | None = None
                ) -> tuple[torch.Tensor, torch.Tensor]:
        h = with_condition(h, condition, self.condition_size)
        return self.mu(h), self.logvar(h).clamp(-20.0, 10.0)


# The rank of the sampler's weight changes (``SamplerAdapter``).
SAMPLER_RANK = 64


class SamplerAdapter(nn.Module):
    """The weights a decoder with a sample flag writes prior samples with: each of its
    weight matrices changed by a low-rank product a @ b (a at zero to start) and each bias
    by a vector (at zero), used only with the flag on. Trained alone on refinement's pairs
    (``train.sampler_only``), they teach the sampler what refinement writes while
    reconstruction, which decodes with the flag off, stays exactly as it was."""

    def __init__(self, shapes: dict[str, torch.Size], rank: int = SAMPLER_RANK):
        super().__init__()
        key = lambda n: n.replace(".", "__")  # noqa: E731 (ParameterDict keys have no dots)
        self.a = nn.ParameterDict({key(n): nn.Parameter(torch.zeros(s[0], rank))
                                   for n, s in shapes.items() if len(s) == 2})
        self.b = nn.ParameterDict({key(n): nn.Parameter(torch.randn(rank, s[1]) / math.sqrt(s[1]))
                                   for n, s in shapes.items() if len(s) == 2})
        self.bias = nn.ParameterDict({key(n): nn.Parameter(torch.zeros(s))
                                      for n, s in shapes.items() if len(s) == 1})

    def changed(self, name: str, w: torch.Tensor) -> torch.Tensor:
        k = name.replace(".", "__")
        return w + (self.a[k] @ self.b[k] if k in self.a else self.bias[k]).to(w.dtype)


class Decoder(nn.Module):
    """Autoregressive GRU; z (with the condition input of a conditional model) sets the
    initial hidden state and is fed at every step.

    ``sample_flag``: the decoder has a second set of weights for prior samples, its own
    weights plus a ``SamplerAdapter``'s changes, used when it is called with ``sampling``
    (prior draws); a molecule's code (reconstruction, refinement, walks) is decoded with
    its own weights."""

    def __init__(self, vocab_size: int, embedding_size: int, latent_size: int, hidden_size: int,
                 num_layers: int, dropout: float = 0.0, word_dropout: float = 0.0,
                 condition_size: int = 0, sample_flag: bool = False):
        super().__init__()
        self.embedding = nn.Embedding(vocab_size, embedding_size, padding_idx=PAD_ID)
        code_size = latent_size + condition_size
        self.z_to_hidden = nn.Linear(code_size, hidden_size * num_layers)
        self.gru = nn.GRU(embedding_size + code_size, hidden_size, num_layers, batch_first=True,
                          dropout=dropout if num_layers > 1 else 0.0)
        self.condition_size = condition_size
        self.out = nn.Linear(hidden_size, vocab_size)
        self.num_layers = num_layers
        self.hidden_size = hidden_size
        self.word_dropout = word_dropout
        self.sampler = (SamplerAdapter({n: p.shape for n, p in self.named_parameters()
                                        if not n.startswith("embedding")})
                        if sample_flag else None)

    def weights(self, sampling: bool) -> dict[str, torch.Tensor]:
        """The decoder's weights by name (embedding aside): its own, or with ``sampling`` in
        a decoder with a sample flag, the sampler's."""
        own = {n: p for n, p in self.named_parameters() if n.split(".")[0] in
               ("z_to_hidden", "gru", "out")}
        if not sampling or self.sampler is None:
            return own
        return {n: self.sampler.changed(n, w) for n, w in own.items()}

    def initial_hidden(self, z: torch.Tensor, w: dict[str, torch.Tensor] | None = None
                       ) -> torch.Tensor:
        """(B, Z) -> (layers, B, H) (``w``: the weights, ``weights()``; default the own)."""
        w = w or self.weights(False)
        h = torch.tanh(F.linear(z, w["z_to_hidden.weight"], w["z_to_hidden.bias"]))
        return h.view(z.shape[0], self.num_layers, self.hidden_size).transpose(0, 1).contiguous()

    def forward(self, z: torch.Tensor, tokens: torch.Tensor, condition: torch.Tensor | None = None,
                sampling: bool = False, hidden: bool = False) -> torch.Tensor:
        """Teacher forcing. z (B, Z), tokens (B, L) -> logits (B, L-1, V) for tokens[:, 1:]
        (``sampling``: prior draws, written with the sampler's weights if it has them;
        ``hidden``: the hidden states (B, L-1, H) instead of logits)."""
        z = with_condition(z, condition, self.condition_size)
        w = self.weights(sampling)
        inputs = tokens[:, :-1]
        if self.training and self.word_dropout > 0:
            drop = torch.rand(inputs.shape, device=inputs.device) < self.word_dropout
            drop[:, 0] = False  # keep <bos>
            inputs = inputs.masked_fill(drop, PAD_ID)
        x = self.embedding(inputs)  # (B, L-1, E)
        x = torch.cat([x, z.unsqueeze(1).expand(-1, x.shape[1], -1)], dim=-1)
        h0 = self.initial_hidden(z, w)
        if not sampling or self.sampler is None:
            out, _ = self.gru(x, h0)  # (B, L-1, H)
        else:  # the sampler's weights, by nn.GRU's own kernel
            out, _ = torch.func.functional_call(
                self.gru, {n.removeprefix("gru."): v for n, v in w.items() if n.startswith("gru.")},
                (x, h0))
        return out if hidden else F.linear(out, w["out.weight"], w["out.bias"])

    def _step_fn(self, z: torch.Tensor, w: dict[str, torch.Tensor]):
        """One GRU step for decoding, as nn.GRU computes it but ~10% cheaper on CPU: the input
        gates of layer 0 are a per-token table (embedding @ W_ih) plus a per-molecule z term,
        both computed once, so each step multiplies only the hidden state."""
        e = self.embedding.embedding_dim
        w0 = w["gru.weight_ih_l0"]
        table = self.embedding.weight @ w0[:, :e].T  # (V, 3H)
        zgates = torch.addmm(w["gru.bias_ih_l0"], z, w0[:, e:].T)  # (B, 3H)
        layers = [(w[f"gru.weight_ih_l{k}"].T.contiguous(), w[f"gru.bias_ih_l{k}"],
                   w[f"gru.weight_hh_l{k}"].T.contiguous(), w[f"gru.bias_hh_l{k}"])
                  for k in range(self.num_layers)]

        def step(tok: torch.Tensor, zg: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
            x = None
            out = []
            for k, (wih, bih, whh, bhh) in enumerate(layers):
                gi = table[tok] + zg if k == 0 else torch.addmm(bih, x, wih)
                gh = torch.addmm(bhh, h[k], whh)
                i_r, i_u, i_n = gi.chunk(3, 1)
                h_r, h_u, h_n = gh.chunk(3, 1)
                r = torch.sigmoid(i_r + h_r)
                u = torch.sigmoid(i_u + h_u)
                n = torch.tanh(torch.addcmul(i_n, r, h_n))
                x = torch.lerp(n, h[k], u)  # (1 - u) * n + u * h
                out.append(x)
            return x.unsqueeze(0) if len(out) == 1 else torch.stack(out)

        return zgates, step

    @torch.no_grad()
    def generate(self, z: torch.Tensor, max_length: int = 100, temperature: float = 1.0,
                 generator: torch.Generator | None = None, banned_first: Sequence[int] = (), *,
                 constraint: DecodeConstraint | None = None,
                 top_p: float | None = None,
                 condition: torch.Tensor | None = None, guidance: float = 1.0,
                 sampling: bool = False) -> torch.Tensor:
        """z (B, Z) -> token ids (B, T) without <bos>, T <= max_length, <pad> after <eos>;
        ``temperature`` 0: greedy, the most likely token at each step;
        ``condition`` (B, C): the condition input of a conditional model (None: none given);
        ``sampling``: prior draws, written with the sampler's weights if it has them;
        ``guidance`` > 1: classifier-free guidance (Ho & Salimans 2022) of each token, the
        conditional log-probabilities pushed away from the unconditional ones,
        log p_u + guidance * (log p_c - log p_u) (two decoder passes per step).

        ``banned_first``: ids never emitted first (<eos> always is). Finished molecules
        leave the batch, so the cost follows the mean length, not the max.
        ``constraint``: a decoding grammar (``molvae.grammar.RingSizeConstraint``, or any
        object whose ``start(B)`` returns a state with ``banned(alive) -> (b', V) bool | None``
        and ``advance(alive, tokens)``); its banned tokens get zero probability, the rest is
        renormalized; a state with ``adjust(alive, last tokens, hidden, logits) -> logits``
        also steers (``molvae.steering``). ``top_p``: nucleus sampling, draw from the smallest set of tokens
        whose probability (after temperature) reaches top_p (0: the top token only; None or
        1.0: off; greedy ignores it). With both None the draws are those of the plain path."""
        if top_p is not None and not 0.0 <= top_p <= 1.0:
            raise ValueError(f"top_p must be in [0, 1], got {top_p}")
        greedy, b = temperature == 0, z.shape[0]
        nucleus = top_p is not None and top_p < 1.0 and not greedy
        guided = condition is not None and guidance != 1.0
        zc = with_condition(z, condition, self.condition_size)
        z = torch.cat([zc, with_condition(z, None, self.condition_size)]) if guided else zc
        w = self.weights(sampling)
        first_ban = torch.tensor([EOS_ID, *banned_first], dtype=torch.long, device=z.device)
        out = torch.full((b, max_length), PAD_ID, dtype=torch.long, device=z.device)
        h = self.initial_hidden(z, w)
        tok = torch.full((b,), BOS_ID, dtype=torch.long, device=z.device)
        alive = torch.arange(b, device=z.device)
        zg, step = self._step_fn(z, w)
        grammar = constraint.start(b) if constraint is not None else None
        for t in range(max_length):
            h = step(torch.cat([tok, tok]) if guided else tok, zg, h)
            logits = F.linear(h[-1], w["out.weight"], w["out.bias"])  # (b', V); guided: (2b', V)
            if guided:
                cond_lp, free_lp = torch.log_softmax(logits, dim=-1).chunk(2)
                logits = free_lp + guidance * (cond_lp - free_lp)
            logits[:, [PAD_ID, BOS_ID]] = -math.inf
            if t == 0:
                logits[:, first_ban] = -math.inf  # an empty string is not a molecule
            if grammar is not None:
                banned = grammar.banned(alive)  # (b', V) or None
                if banned is not None:
                    logits.masked_fill_(banned, -math.inf)
                if hasattr(grammar, "adjust"):  # steering: logits of the tokens it may choose
                    logits = grammar.adjust(alive, tok, h[-1][: len(alive)], logits)
            tok = (logits.argmax(-1) if greedy else
                   _draw(logits, temperature, top_p if nucleus else None, generator))
            out[alive, t] = tok
            if grammar is not None:
                grammar.advance(alive, tok)
            running = tok != EOS_ID
            if not bool(running.all()):
                both = torch.cat([running, running]) if guided else running
                alive, tok, zg, h = alive[running], tok[running], zg[both], h[:, both]
                if alive.numel() == 0:
                    break
        return out


def _draw(logits: torch.Tensor, temperature: float, top_p: float | None,
          generator: torch.Generator | None) -> torch.Tensor:
    """One token per row from softmax(logits / temperature), within the nucleus ``top_p``
    when given (the smallest set of tokens whose probability reaches it)."""
    probs = torch.softmax(logits / temperature, dim=-1)
    if top_p is not None:
        sorted_p, order = probs.sort(dim=-1, descending=True)
        # drop a token when the mass before it already reaches top_p
        drop = (sorted_p.cumsum(-1) - sorted_p) >= top_p
        drop[:, 0] = False
        probs = probs.masked_fill(drop.scatter(1, order, drop), 0.0)
    return torch.multinomial(probs, 1, generator=generator)[:, 0]


class PropertyHead(nn.Module):
    """MLP z -> standardized properties (Gomez-Bombarelli et al. 2018)."""

    def __init__(self, latent_size: int, hidden_size: int, num_properties: int):
        super().__init__()
        self.net = nn.Sequential(
            nn.Linear(latent_size, hidden_size), nn.GELU(),
            nn.Linear(hidden_size, hidden_size), nn.GELU(),
            nn.Linear(hidden_size, num_properties),
        )

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.net(z)  # (B, P)


class SteeringHead(nn.Module):
    """Per possible next token, the properties of the molecule being written once finished (a
    future discriminator, Yang & Klein 2021): its own GRU over the tokens and the decoder's
    hidden state -> mean, log-variance per property (standardized) and token (molvae.steering)."""

    def __init__(self, vocab_size: int, decoder_hidden: int, num_properties: int, size: int = 256):
        super().__init__()
        self.shape = (vocab_size, num_properties, 2)
        self.embedding = nn.Embedding(vocab_size, 64)
        self.gru = nn.GRU(64, size, batch_first=True)
        self.net = nn.Sequential(nn.Linear(size + decoder_hidden, size), nn.GELU(),
                                 nn.Linear(size, size), nn.GELU(), nn.Linear(size, math.prod(self.shape)))

    def forward(self, tokens: torch.Tensor, hidden: torch.Tensor, state: torch.Tensor | None = None
                ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """tokens (B, L) read (<bos> first), the decoder's hidden states after each (B, L, H),
        the GRU's state before them (1, B, size) -> mean, logvar (B, L, V, P), the state after."""
        g, state = self.gru(self.embedding(tokens), state)
        out = self.net(torch.cat([g, hidden], -1)).unflatten(-1, self.shape)
        return out[..., 0], out[..., 1].clamp(-7, 5), state


class SelfiesVAE(nn.Module):
    def __init__(self, encoder: Encoder, latent: LatentHead, decoder: Decoder,
                 property_head: PropertyHead | None = None, steering: SteeringHead | None = None):
        super().__init__()
        self.encoder = encoder
        self.latent = latent
        self.decoder = decoder
        self.property_head = property_head
        self.steering = steering

    @property
    def latent_size(self) -> int:
        return self.latent.mu.out_features

    @property
    def condition_size(self) -> int:
        return self.decoder.condition_size

    def encode(self, tokens: torch.Tensor, lengths: torch.Tensor,
               condition: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """-> mu, logvar, each (B, Z); ``condition`` (B, C) of a conditional model, None:
        no property given."""
        return self.latent(self.encoder(tokens, lengths), condition)

    @staticmethod
    def reparameterize(mu: torch.Tensor, logvar: torch.Tensor,
                       scale: float | torch.Tensor = 1.0) -> torch.Tensor:
        """z ~ N(mu, (scale * sigma)^2); scale 1: q(z|x) itself; a (B, 1) tensor: per row."""
        return mu + scale * torch.exp(0.5 * logvar) * torch.randn_like(mu)

    def forward(self, tokens: torch.Tensor, lengths: torch.Tensor,
                condition: torch.Tensor | None = None, noise: float | torch.Tensor = 1.0
                ) -> dict[str, torch.Tensor]:
        """Training: z drawn from q(z|x) with its spread times ``noise``; eval: z = mu."""
        mu, logvar = self.encode(tokens, lengths, condition)
        z = self.reparameterize(mu, logvar, noise) if self.training else mu
        out = {"mu": mu, "logvar": logvar, "z": z,
               "logits": self.decoder(z, tokens, condition)}
        if self.property_head is not None:
            out["properties"] = self.property_head(z)
        return out


def build_model(cfg: ModelConfig, vocab_size: int) -> SelfiesVAE:
    encoder = Encoder(vocab_size, cfg.embedding_size, cfg.encoder_hidden_size,
                      cfg.encoder_num_layers, cfg.dropout)
    c = 2 * len(cfg.conditions)  # a value and a given-flag per property
    latent = LatentHead(encoder.output_size, cfg.latent_size, c)
    decoder = Decoder(vocab_size, cfg.embedding_size, cfg.latent_size, cfg.decoder_hidden_size,
                      cfg.decoder_num_layers, cfg.dropout, cfg.word_dropout, c, cfg.sample_flag)
    head = (PropertyHead(cfg.latent_size, cfg.property_hidden_size, len(cfg.property_names))
            if cfg.property_names else None)
    steering = (SteeringHead(vocab_size, cfg.decoder_hidden_size, len(cfg.steering))
                if cfg.steering else None)
    return SelfiesVAE(encoder, latent, decoder, head, steering)


def load_widened(model: SelfiesVAE, state: dict[str, torch.Tensor]) -> None:
    """Load the weights of an unconditional model (or one without sampler weights) into a
    conditional one (or one with them) of the same sizes: new condition inputs and sampler
    changes start at zero (step 0 is the model it starts from); a steering head is left out."""
    own = model.state_dict()
    state = {**{k: v for k, v in own.items() if ".sampler." in k},
             **{k: v for k, v in state.items() if not k.startswith("steering.") or k in own}}
    for name, w in state.items():
        if name in own and own[name].shape != w.shape:
            grown = (w.ndim == 2 and own[name].ndim == 2 and own[name].shape[0] == w.shape[0]
                     and own[name].shape[1] > w.shape[1])
            if not grown:
                raise ValueError(f"{name}: shape {tuple(w.shape)} cannot start {tuple(own[name].shape)}")
            wide = torch.zeros_like(own[name])
            wide[:, : w.shape[1]] = w
            state = {**state, name: wide}
    model.load_state_dict(state)


# --------------------------------------------------------------------------- loss terms


def reconstruction_loss(logits: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
    """Summed token cross-entropy per molecule. logits (B, L-1, V), tokens (B, L) -> (B,)."""
    target = tokens[:, 1:]
    ce = F.cross_entropy(logits.transpose(1, 2), target, ignore_index=PAD_ID, reduction="none")
    return ce.sum(dim=1)


def kl_divergence(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """KL(q(z|x) || N(0, I)) per latent dimension, (B, Z); always >= 0."""
    return 0.5 * (mu.pow(2) + logvar.exp() - 1.0 - logvar)


def kl_term(kl_dims: torch.Tensor, free_bits: float = 0.0) -> torch.Tensor:
    """Batch-mean KL per molecule; with free bits, dims below ``free_bits`` nats cost nothing."""
    per_dim = kl_dims.mean(dim=0)  # (Z,)
    if free_bits > 0:
        per_dim = per_dim.clamp(min=free_bits)
    return per_dim.sum()


def token_accuracy(logits: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
    target = tokens[:, 1:]
    mask = target != PAD_ID
    return ((logits.argmax(-1) == target) & mask).sum() / mask.sum().clamp(min=1)


def beta_at(step: int, schedule: str, start: float, end: float, warmup: int) -> float:
    """KL weight at an optimizer step: constant, linear warm-up, sigmoid, or cyclical
    (linear ramp over the first half of each ``2 * warmup``-step cycle, Fu et al. 2019)."""
    if schedule == "constant":
        return end
    if schedule == "linear":
        frac = min(step / warmup, 1.0)
    elif schedule == "sigmoid":
        frac = 1.0 / (1.0 + math.exp(-10.0 * (step / warmup - 0.5)))
    elif schedule == "cyclical":
        frac = min((step % (2 * warmup)) / warmup, 1.0)
    else:
        raise ValueError(f"unknown beta schedule {schedule!r}")
    return start + (end - start) * frac
