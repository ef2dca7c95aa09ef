"""MolvaeError: the base of every error a user can fix (bad input, bad file, bad setting).

The CLI prints these as one line; any other exception is a bug and keeps its traceback.
Each subclass also derives from ValueError, which is what it is to Python callers.
"""

from __future__ import annotations

__all__ = [
    "MolvaeError",
    "ConfigError",
    "DataError",
    "VocabError",
    "InvalidMoleculeError",
    "CheckpointError",
    "GenerationError",
    "ScoringError",
    "MetricsError",
    "OptimizationError",
    "TrainingError",
    "OutputError",
]


class MolvaeError(Exception):
    """A problem the user can fix; its message is one line that says what and where."""


class ConfigError(MolvaeError, ValueError):
    """A config file or override is invalid; the message lists every problem."""


class DataError(MolvaeError, ValueError):
    """An input file cannot be read or holds no usable molecules."""


class VocabError(MolvaeError, ValueError):
    """A molecule has SELFIES tokens the model's vocabulary lacks."""

    def __init__(self, smiles: str, tokens: list[str] | tuple[str, ...]):
        self.smiles = smiles
        self.tokens = list(tokens)
        super().__init__(
            f"molecule {smiles!r} has token(s) outside the vocabulary: {', '.join(self.tokens)}"
        )


class InvalidMoleculeError(MolvaeError, ValueError):
    """A molecule given by the user is not a valid molecule or cannot be written as SELFIES."""


class CheckpointError(MolvaeError, ValueError):
    """A checkpoint is missing, corrupt, truncated or incompatible."""


class GenerationError(MolvaeError, ValueError):
    """A sampling, decoding or latent-space request is invalid."""


class ScoringError(MolvaeError, ValueError):
    """An unknown property or filter was asked for."""


class MetricsError(MolvaeError, ValueError):
    """Metrics cannot be computed on the given molecules."""


class OptimizationError(MolvaeError, ValueError):
    """An optimization objective or method setting is invalid."""


class TrainingError(MolvaeError, ValueError):
    """Training cannot start or cannot go on (empty split, missing properties, device)."""


class OutputError(MolvaeError, ValueError):
    """An output path cannot be written (wrong suffix, a directory, no permission)."""
