"""molvae: a SELFIES recurrent VAE for molecular generation, checked by RDKit.

Nothing heavy happens at import: submodules load torch and RDKit when first used.
"""

from __future__ import annotations

import importlib
import sys
import types
from typing import Any

__version__ = "0.1.0"

__all__ = [
    "load_config",
    "prepare",
    "train_model",
    "load_model",
    "sample",
    "interpolate",
    "neighbors",
    "reconstruct",
    "annotate",
    "evaluate",
    "optimize",
]

_HOME = {
    "load_config": "config",
    "prepare": "data",
    "train_model": "train",
    "load_model": "train",
    "sample": "generate",
    "interpolate": "generate",
    "neighbors": "generate",
    "reconstruct": "generate",
    "annotate": "generate",
    "evaluate": "metrics",
    "optimize": "optimize",
}


def __getattr__(name: str) -> Any:
    # Eleven names, resolved on first use so `import molvae` stays cheap.
    if name in _HOME:
        return getattr(importlib.import_module(f".{_HOME[name]}", __name__), name)
    raise AttributeError(f"module 'molvae' has no attribute {name!r}")


class _Package(types.ModuleType):
    """Loading a submodule binds it as an attribute of its package, so once anything imports
    ``molvae.optimize`` (the module) it would hide ``molvae.optimize`` (the function). The
    functions above keep their names."""

    def __setattr__(self, name: str, value: Any) -> None:
        if name in _HOME and isinstance(value, types.ModuleType):
            return
        super().__setattr__(name, value)


sys.modules[__name__].__class__ = _Package
