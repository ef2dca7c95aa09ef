"""molvae: a SELFIES recurrent VAE for molecular generation, checked by RDKit.

Nothing heavy happens at import: submodules load torch and RDKit when first used.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

__all__ = [
    "load_config",
    "read_molecules",
    "prepare",
    "train_model",
    "load_model",
    "sample",
    "interpolate",
    "neighbors",
    "reconstruct",
    "annotate",
    "add_nearest",
    "known_index",
    "rank",
    "top_set",
    "evaluate",
    "optimize",
]

_HOME = {
    "load_config": "config",
    "read_molecules": "data",
    "prepare": "data",
    "train_model": "train",
    "load_model": "checkpoint",
    "sample": "generate",
    "interpolate": "walks",
    "neighbors": "walks",
    "reconstruct": "generate",
    "annotate": "candidates",
    "add_nearest": "candidates",
    "known_index": "candidates",
    "rank": "candidates",
    "top_set": "candidates",
    "evaluate": "metrics",
    "optimize": "optimization",
}


def __getattr__(name: str) -> Any:
    # The public names, resolved on first use so `import molvae` stays cheap.
    if name in _HOME:
        return getattr(importlib.import_module(f".{_HOME[name]}", __name__), name)
    raise AttributeError(f"module 'molvae' has no attribute {name!r}")
