"""Validated configuration sections (pydantic, unknown keys rejected) and TOML loading.

Each component takes its own section (``fit(..., cfg=TrainConfig)``); ``RunConfig`` only
groups them for the flows and the CLI."""

from __future__ import annotations

import builtins
import math
import tomllib
from pathlib import Path
from typing import Annotated, Literal, get_args

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError, model_validator

from .errors import ConfigError
from .files import inputs_beside

__all__ = ["ConfigError", "DataConfig", "ModelConfig", "TrainConfig", "GenerateConfig", "ScoreConfig",
           "OptimizeConfig", "ScorerConfig", "TrackingConfig", "RunConfig", "load_config",
           "apply_overrides"]

PACKAGE_DIR = Path(__file__).resolve().parent
REPO_DIR = PACKAGE_DIR.parent
DATA_DIR = REPO_DIR / "data"
SHIPPED_TRAIN = REPO_DIR / "data" / "moses_train_100k.csv.gz"
SHIPPED_TEST = REPO_DIR / "data" / "moses_test_10k.csv.gz"
# the default model: the conditional one (it samples unconditionally when asked nothing)
SHIPPED_MODEL = REPO_DIR / "data" / "model" / "molvae_moses_cvae.pt"


class _Section(BaseModel):
    # inf and nan are refused everywhere: no setting means "infinitely large" here
    model_config = ConfigDict(extra="forbid", validate_assignment=True, allow_inf_nan=False)

    @model_validator(mode="before")
    @classmethod
    def _empty_is_none(cls, data):
        """TOML has no null: an empty string means "not set" for optional fields."""
        if isinstance(data, dict):
            optional = {k for k, f in cls.model_fields.items()
                        if f.default is None or type(None) in get_args(f.annotation)}
            data = {k: (None if k in optional and v == "" else v) for k, v in data.items()}
        return data


class DataConfig(_Section):
    path: Path = SHIPPED_TRAIN
    smiles_column: str = "SMILES"
    property_columns: list[str] = []
    standardize: bool = False  # largest fragment + neutralize (RDKit MolStandardize)
    max_tokens: int = Field(100, ge=2, le=1000)  # SELFIES tokens; longer molecules are dropped
    limit: int | None = Field(None, ge=1)  # use only the first N rows (quick runs)
    val_fraction: float = Field(0.02, gt=0, lt=0.5)
    split_seed: int = Field(0, ge=0, lt=2**63)  # the validation split (train.seed: init, batches)
    cache_dir: Path = Path(".molvae_cache")
    workers: int | None = Field(None, ge=1)  # None: all cores


class ModelConfig(_Section):
    embedding_size: int = Field(64, ge=1)
    encoder_hidden_size: int = Field(256, ge=1)
    encoder_num_layers: int = Field(1, ge=1)
    latent_size: int = Field(128, ge=1)
    decoder_hidden_size: int = Field(512, ge=1)
    decoder_num_layers: int = Field(1, ge=1)
    dropout: float = Field(0.0, ge=0, lt=1)  # between stacked GRU layers
    word_dropout: float = Field(0.0, ge=0, lt=1)  # decoder input tokens replaced by <pad>
    property_names: list[str] = []  # property head targets (e.g. ["qed", "sa", "logp"])
    property_hidden_size: int = Field(128, ge=1)
    # a conditional model (CVAE): properties the encoder and decoder receive (RDKit properties
    # or numeric data columns), e.g. ["mw", "logp", "tpsa", "hbd", "hba", "qed", "sa"]
    conditions: list[str] = []
    sample_flag: bool = False  # the decoder's own weights for prior samples (molvae.model)
    steering: list[str] = []  # properties of the steering head (`molvae steer`; molvae.steering)


class TrainConfig(_Section):
    epochs: int = Field(10, ge=1)
    batch_size: int = Field(512, ge=1)
    lr: float = Field(1e-3, gt=0)
    lr_min: float = Field(1e-4, ge=0)  # cosine decay floor
    lr_warmup_steps: int = Field(0, ge=0)  # linear warm-up from 0 (fine-tuning: fresh AdamW state)
    weight_decay: float = Field(1e-4, ge=0)
    grad_clip: float = Field(5.0, gt=0)
    beta_schedule: Literal["constant", "linear", "sigmoid", "cyclical"] = "linear"
    beta_start: float = Field(0.0, ge=0)
    beta_max: float = Field(0.05, ge=0)
    beta_warmup_steps: int = Field(2000, ge=1)  # ramp length (per cycle for "cyclical")
    free_bits: float = Field(0.0, ge=0)  # nats per latent dim below which KL is not penalised
    property_weight: float = Field(1.0, ge=0)
    patience: int = Field(3, ge=1)  # early stopping on validation loss
    max_minutes: float | None = Field(None, gt=0)  # stop after this much training time
    # with max_minutes: shorten the cosine so it reaches lr_min as the time runs out (the
    # pace re-measured every 20 steps), not cut off mid-decay when epochs do not all fit
    lr_fit_to_time: bool = False
    init_from: Path | None = None  # start from these weights (fresh optimizer and schedule)
    freeze_encoder: bool = False  # train the decoder only (encoder and latent head fixed)
    # the decoder is trained on z = mu + latent_noise * sigma * eps: 1 is the VAE's own draw;
    # above 1 it learns to write codes drawn wider, as the sampler draws them (prior width)
    latent_noise: float = Field(1.0, ge=0, le=4)
    # the share of each batch's molecules drawn with latent_noise; the rest keep q(z|x)'s own
    # draw (1), so the decoder learns the wider codes without unlearning the exact ones
    latent_noise_share: float = Field(1.0, ge=0, le=1)
    # refinement distilled (molvae.distill): a pairs file (`molvae data pairs`); each step also
    # teaches the decoder to write, from those draws, what refinement made of them (weighed
    # beside the usual loss); sampler_only: the sampler's weights alone, on the pairs alone
    distill: Path | None = None
    distill_weight: float = Field(1.0, gt=0)
    sampler_only: bool = False
    # condition dropout: the whole condition vector dropped with probability condition_dropout
    # (the model learns to sample without one), else each property with property_dropout
    condition_dropout: float = Field(0.2, ge=0, le=1)
    property_dropout: float = Field(0.3, ge=0, le=1)
    recon_eval_size: int = Field(500, ge=0)  # validation molecules greedily reconstructed
    prior_codes: int = Field(16384, ge=0)  # training posteriors kept for prior="posterior" (0 = none)
    seed: int = Field(0, ge=0, lt=2**63)
    device: Literal["auto", "cpu", "cuda"] = "auto"
    amp: bool | None = None  # bf16 autocast of forward and loss; None: on for CUDA, off on CPU
    threads: int | None = Field(None, ge=1)
    out_dir: Path = Path("runs/train")
    overwrite: bool = False  # replace a trained model already in out_dir (else refused)

    @model_validator(mode="after")
    def _no_idle_options(self) -> TrainConfig:
        idle = [self.latent_noise_share != 1 and self.latent_noise == 1 and
                "latent_noise_share widens nothing while latent_noise is 1",
                self.distill_weight != 1 and self.distill is None and
                "distill_weight weighs nothing without a pairs file (train.distill)",
                self.sampler_only and self.distill is None and
                "sampler_only trains on refinement's pairs: give them (train.distill)"]
        if any(idle):
            raise ValueError("; ".join(filter(None, idle)))
        return self


def _checked_request(value):
    """A request ({name: value or [low, high]}; None: none, as {}) with one clear message per
    bad value (not one per branch of its union type). Names are matched to a model's
    conditions whatever their case (``ConditionSpace.check``)."""
    for name, v in (value or {}).items() if isinstance(value, dict | None) else ():
        parts = v if isinstance(v, (list, tuple)) and len(v) == 2 else [v]
        if not all(isinstance(x, (int, float)) and not isinstance(x, bool)
                   and math.isfinite(x) for x in parts):
            raise ValueError(f"{name}: want a finite number or a [low, high] pair of them, "
                             f"got {v!r}")
    return {} if value is None else value


Request = Annotated[dict[str, float | tuple[float, float]], BeforeValidator(_checked_request)]


class GenerateConfig(_Section):
    num_samples: int = Field(10_000, ge=1)
    batch_size: int = Field(1000, ge=1)
    temperature: float = Field(1.0, gt=0)
    # argmax tokens instead of drawing them; None: the model's stored choice (the shipped model:
    # greedy, the lowest FCD that keeps novelty >= 0.85; benchmarks/sampling_frontier.py)
    greedy: bool | None = None
    top_p: float | None = Field(None, gt=0, le=1)  # nucleus sampling; None = off
    # refinement passes: each decoded molecule encoded and its code decoded greedily again (odd
    # molecules move to typical ones); None: the model's stored choice (0: none, or a condition)
    refine: int | None = Field(None, ge=0, le=10)
    # never close a ring of a size the training data lacks; None: when the model stores them
    ring_grammar: bool | None = None
    max_length: int = Field(100, ge=1)
    unique: bool = False  # keep sampling until num_samples unique valid molecules
    prior: Literal["auto", "normal", "posterior"] = "auto"  # where z comes from (see README)
    # posterior spread scale; None = the model's (with a condition: its width for requests)
    prior_width: float | None = Field(None, gt=0)
    seed: int = Field(0, ge=0, lt=2**63)
    # a conditional model: requested properties, {name: value} or {name: [low, high]}
    # (e.g. {"logp": [2, 3], "tpsa": 70}); empty: unconditional sampling
    condition: Request = {}
    # with a condition: draw the prior codes of training molecules near the request (a
    # conditional prior p(z|c)) as well as telling the decoder (p(x|z,c))
    condition_codes: bool = True
    # classifier-free guidance of a conditional decoder: 1 = the plain conditional model, > 1
    # follows the condition more closely (two passes per token); None: the model's (else 1)
    condition_guidance: float | None = Field(None, ge=0, le=20)
    # with a condition: decode this many molecules for each one returned and keep the one
    # whose RDKit properties come closest to the request; None: 4 for a request of RDKit
    # properties (1 for data columns, which a bare molecule does not carry); 1: the model alone
    condition_draws: int | None = Field(None, ge=1, le=64)
    # with a condition: steer each token towards the request by the model's steering head
    # (molvae.steering; `molvae steer`): 0 off; None: the model's stored strength (else 0)
    condition_steer: float | None = Field(None, ge=0, le=100, strict=True)  # True, "5": refused
    interpolate: list[str] = ["CC(=O)Oc1ccccc1C(=O)O", "CN1C=NC2=C1C(=O)N(C(=O)N2C)C"]
    interpolation_steps: int = Field(10, ge=2, le=1000)  # points per segment
    neighbors: list[str] = ["CC(=O)Nc1ccc(O)cc1"]  # seed molecules to explore around
    neighbor_radii: list[float] = [0.1, 0.25, 0.5]  # noise scale in prior standard deviations
    neighbors_per_radius: int = Field(20, ge=1, le=10_000)


RAMP_KINDS = ("maximize", "minimize", "window")
GAUSSIAN_KINDS = ("gaussian", "min_gaussian", "max_gaussian")


class DesirabilityTerm(_Section):
    """Desirability in [0, 1] of one property (``property``: a built-in property or a
    scorer's name) or of an inline ``scorer``. Kinds (GuacaMol's score modifiers, Brown et
    al. 2019): ``maximize``/``minimize`` ramp linearly between ``low`` and ``high``
    (ClippedScoreModifier); ``window`` is 1 inside [low, high], falling to 0 one width
    outside; ``gaussian`` exp(-((x - mu) / sigma)^2 / 2), ``min_gaussian`` the same but 1 at
    or below ``mu``, ``max_gaussian`` 1 at or above ``mu``; ``threshold`` min(x, high) / high
    (ThresholdedLinearModifier); ``value`` the value itself (scores already in [0, 1])."""

    property: str = ""
    scorer: ScorerConfig | None = None
    kind: Literal["maximize", "minimize", "window", "gaussian", "min_gaussian", "max_gaussian",
                  "threshold", "value"] = "maximize"
    low: float | None = None
    high: float | None = None
    mu: float | None = None
    sigma: float | None = Field(None, gt=0)
    weight: float = Field(1.0, gt=0)

    @model_validator(mode="after")
    def _complete(self) -> DesirabilityTerm:
        what = self.name
        if not self.property and self.scorer is None:
            raise ValueError("a desirability term needs a property (or an inline scorer)")
        if self.kind in RAMP_KINDS:
            if self.low is None or self.high is None:
                raise ValueError(f"desirability for {what!r} ({self.kind}): needs low and high")
            if not self.low < self.high:
                raise ValueError(f"desirability for {what!r}: low must be < high")
        elif self.kind in GAUSSIAN_KINDS and (self.mu is None or self.sigma is None):
            raise ValueError(f"desirability for {what!r} ({self.kind}): needs mu and sigma")
        elif self.kind == "threshold" and not (self.high or 0) > 0:
            raise ValueError(f"desirability for {what!r} (threshold): needs high > 0")
        return self

    @builtins.property  # the field ``property`` shadows the builtin in this class
    def name(self) -> str:
        """The column this term reads: ``property``, or the inline scorer's description."""
        if self.property or self.scorer is None:
            return self.property
        return f"{self.scorer.kind}({self.scorer.target})" if self.scorer.target else self.scorer.kind


class ScorerConfig(_Section):
    """A named score of molecules, usable wherever a property name is (the optimization
    objective, the terms of an ``mpo``). ``target`` is, by kind: ``property`` a built-in
    property name or an RDKit descriptor (``rdkit.Chem.Descriptors``, e.g. ``BertzCT``);
    ``atom_count`` an element symbol (hydrogens included); ``similarity`` the target SMILES
    (Tanimoto with ``fingerprint``);
    ``isomer`` a molecular formula (GuacaMol's isomer score); ``smarts`` a SMARTS pattern
    (1 when present, or when absent with ``present = false``); ``callable``
    ``package.module:function`` or ``path/to/file.py:function`` (takes a list of SMILES,
    returns a list of floats, NaN where it cannot score); ``chemprop`` a chemprop v2 model
    file (``pip install molvae[chemprop]``). ``mpo`` combines ``terms`` by their weighted
    ``combine`` mean."""

    kind: Literal["property", "similarity", "isomer", "smarts", "atom_count", "callable",
                  "chemprop", "mpo"]
    target: str = ""
    fingerprint: Literal["ecfp4", "ecfp6", "fcfp4", "fcfp6", "ap", "phco", "morgan2048"] = "ecfp4"
    present: bool = True
    terms: list[DesirabilityTerm] = []
    combine: Literal["geometric", "arithmetic"] = "geometric"
    batch_size: int = Field(256, ge=1)  # molecules per call of a callable / chemprop model

    @model_validator(mode="after")
    def _complete(self) -> ScorerConfig:
        if self.kind == "mpo" and not self.terms:
            raise ValueError("an mpo scorer needs terms")
        if self.kind != "mpo" and not self.target:
            raise ValueError(f"a {self.kind} scorer needs a target")
        return self


DesirabilityTerm.model_rebuild()


class ScoreConfig(_Section):
    # the properties computed for every candidate; None: all (chem.PROPERTIES). The
    # desirability's properties are always computed, the windows' are checked unlisted.
    properties: list[str] | None = None
    filters: list[str] = ["lipinski", "veber", "pains", "brenk", "nih", "moses", "windows"]
    windows: dict[str, tuple[float, float]] = {"mw": (150.0, 600.0), "heavy_atoms": (10, 60)}
    desirability: list[DesirabilityTerm] = [
        DesirabilityTerm(property="qed", kind="maximize", low=0.3, high=0.9, weight=2.0),
        DesirabilityTerm(property="sa", kind="minimize", low=2.0, high=5.0),
        DesirabilityTerm(property="logp", kind="window", low=1.0, high=4.0),
    ]
    reference_smiles: list[str] = []  # similarity-to-reference filter (max Tanimoto)
    min_reference_similarity: float = Field(0.0, ge=0, le=1)
    # each candidate's nearest molecule (Morgan Tanimoto) in this file: the model's training
    # data by default (the shipped 100k sample); "" = not looked up
    known_molecules: Path | None = SHIPPED_TRAIN
    known_smiles_column: str = "SMILES"
    # the top set: at most this similar to a better-ranked member (one per chemotype) ...
    top_max_similarity: float = Field(0.55, gt=0, le=1)
    top_include_known: bool = False  # ... and without training molecules (counted apart)
    workers: int | None = Field(None, ge=1)


class OptimizeConfig(_Section):
    method: Literal["gradient", "cmaes", "constrained", "random", "turbo", "ga"] = "cmaes"
    # a property name, "desirability", a [scorers] name, a built-in task ("pmo:median1"), a
    # callable ("file.py:function", "package.module:function") or "chemprop:model.pt"
    objective: str = "qed"
    direction: Literal["maximize", "minimize"] = "maximize"
    window: tuple[float, float] | None = None  # target window instead of max/min
    required_filters: list[str] = []
    max_heavy_atoms: int | None = Field(None, ge=1)
    seeds: list[str] = []  # seed molecules (constrained / local search)
    similarity_threshold: float = Field(0.0, ge=0, le=1)  # Tanimoto to the seed >= delta
    oracle_budget: int = Field(2000, ge=1)  # RDKit evaluations
    num_starts: int = Field(32, ge=1)  # parallel starts (gradient) / population (cmaes)
    steps: int = Field(50, ge=1)
    step_size: float = Field(0.05, gt=0)
    sigma: float = Field(0.5, gt=0)  # CMA-ES initial step / constrained search radius
    # share of candidates made by one SELFIES edit: constrained, of each round's candidates
    # (the rest decoded around the seed's latent code); ga, of the children (the rest by
    # latent crossover). None: what measured best, 0.75 for constrained, 0.25 for ga
    edit_fraction: float | None = Field(None, ge=0, le=1)

    def edit_share(self) -> float:
        """``edit_fraction``, or the method's measured best when it is not set."""
        if self.edit_fraction is not None:
            return self.edit_fraction
        return 0.25 if self.method == "ga" else 0.75
    prior_weight: float = Field(0.1, ge=0)  # keeps z where the prior has mass
    surrogate_size: int = Field(5000, ge=100)  # training molecules for the latent surrogate
    top_k: int = Field(10, ge=1)
    seed: int = Field(0, ge=0, lt=2**63)


class TrackingConfig(_Section):
    enabled: bool = True
    tracking_uri: str | None = None  # None: MLFLOW_TRACKING_URI or sqlite:///mlflow.db
    experiment: str = "molvae"
    registered_model: str | None = "molvae"
    top_images: int = Field(24, ge=0)


class ConditionalConfig(_Section):
    """The pipeline's conditional section (a conditional model): ``num_samples`` molecules
    for each request in ``targets``, e.g. [{logp = [2, 3], tpsa = [0, 90], mw = 340}]."""

    targets: list[Annotated[Request, Field(min_length=1)]] = []  # each asks for something
    num_samples: int = Field(1000, ge=1)


class RunConfig(_Section):
    model_path: Path | None = None  # None: the shipped model (train only if retrain = true)
    retrain: bool = False
    out_dir: Path = Path("runs")  # each run writes runs/<run name>/
    runner: Literal["thread", "dask"] = "thread"
    dask_address: str | None = None
    shards: int = Field(4, ge=1)
    data: DataConfig = DataConfig()
    model: ModelConfig = ModelConfig()
    train: TrainConfig = TrainConfig()
    generate: GenerateConfig = GenerateConfig()
    score: ScoreConfig = ScoreConfig()
    optimize: OptimizeConfig = OptimizeConfig()
    conditional: ConditionalConfig = ConditionalConfig()
    scorers: dict[str, ScorerConfig] = {}
    tracking: TrackingConfig = TrackingConfig()


def _format_errors(exc: ValidationError) -> str:
    lines = []
    for err in exc.errors():
        loc = ".".join(str(p) for p in err["loc"]) or "<root>"
        msg = "unknown key" if err["type"] == "extra_forbidden" else err["msg"]
        msg = msg.removeprefix("Value error, ")  # a validator's own message, as it wrote it
        lines.append(f"{loc}: {msg}")
    return f"{len(lines)} invalid config entr{'y' if len(lines) == 1 else 'ies'}: " + "; ".join(lines)


def validate(cls: type[BaseModel], data: dict) -> BaseModel:
    """Validate ``data`` against ``cls``; every invalid key is listed in one ConfigError."""
    try:
        return cls.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(_format_errors(exc)) from None


def load_config(path: str | Path | None = None, overrides: list[str] | None = None) -> RunConfig:
    """Load a RunConfig from TOML (or the defaults) and apply ``section.key=value`` overrides."""
    data: dict = {}
    if path is not None:
        path = Path(path)
        if not path.is_file():
            raise ConfigError(f"config file {'is a folder' if path.is_dir() else 'not found'}: {path}")
        try:
            data = tomllib.loads(path.read_text(encoding="utf-8"))
        except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
            raise ConfigError(f"{path}: not valid TOML ({exc})") from None
        data = inputs_beside(data, path.resolve().parent, REPO_DIR)
    data = apply_overrides(data, overrides or [])
    return validate(RunConfig, data)  # type: ignore[return-value]


def overridden(cls: type[BaseModel], cfg: BaseModel | None, overrides: dict, where: str,
               section: str) -> BaseModel:
    """``cfg`` (default: ``cls()``) with single settings ``overrides``, validated like a config
    file; a ``cfg`` of another type (a dict) is refused in one line."""
    if cfg is not None and not isinstance(cfg, cls):
        raise ConfigError(f"{where}'s cfg is a {cls.__name__} (cfg.{section}), not "
                          f"{type(cfg).__name__}; give single settings as keywords")
    return validate(cls, {**(cfg or cls()).model_dump(), **overrides})


def apply_overrides(data: dict, overrides: list[str]) -> dict:
    """Apply ``a.b.c=value`` strings (value parsed as TOML, else kept as a string)."""
    data = dict(data)
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"override {item!r} is not of the form section.key=value")
        key, raw = item.split("=", 1)
        try:
            value = tomllib.loads(f"v = {raw}")["v"]
        except tomllib.TOMLDecodeError:
            value = raw
        node = data
        parts = key.strip().split(".")
        for part in parts[:-1]:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ConfigError(f"override {item!r}: {part!r} is not a section")
        node[parts[-1]] = value
    return data


def flatten(cfg: BaseModel, prefix: str = "") -> dict[str, str]:
    """Flatten a config into ``section.key -> str`` (MLflow params)."""
    out: dict[str, str] = {}
    for key, value in cfg.model_dump(mode="json").items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            for k, v in _flatten_dict(value, name + ".").items():
                out[k] = v
        else:
            out[name] = str(value)
    return out


def _flatten_dict(d: dict, prefix: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for k, v in d.items():
        if isinstance(v, dict):
            out.update(_flatten_dict(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = str(v)
    return out
