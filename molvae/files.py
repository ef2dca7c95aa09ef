"""Files written whole or not at all, and the files a config file reads, found beside it."""

from __future__ import annotations

import contextlib
import os
from pathlib import Path


@contextlib.contextmanager
def atomic_path(path: str | Path):
    """Yield a temp path beside ``path``; rename it into place only if the block succeeds,
    so an interrupted run (Ctrl-C) never leaves a half-written file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}.tmp{os.getpid()}{path.suffix}")
    try:
        yield tmp
        os.replace(tmp, path)
    except OSError as e:  # name the file the user asked for, not its temp copy
        if e.filename is not None and Path(e.filename) == tmp:
            raise type(e)(e.errno, e.strerror, str(path)) from None
        raise
    finally:
        with contextlib.suppress(OSError):  # a failed clean-up never hides what failed
            tmp.unlink(missing_ok=True)


def make_writable_folder(folder: str | Path) -> None:
    """Create ``folder`` (and its parents) and check a file can be written in it; raises
    OSError (its ``strerror`` says why) when not: before any work that would write there."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    probe = folder / f".write_probe{os.getpid()}"
    probe.touch()
    probe.unlink()


# Files a config file reads, whose relative paths mean: beside the config file (the shipped
# molvae.toml works from any folder), else, where nothing is there, the shipped file of that
# name (a copy of molvae.toml names data/... as the repository does); outputs (out_dir,
# cache_dir) stay where you run, and --set values are paths as typed, from the working folder.
INPUT_KEYS = (("model_path",), ("data", "path"), ("train", "init_from"), ("train", "distill"),
              ("score", "known_molecules"))


def inputs_beside(data: dict, folder: Path, shipped: Path | None = None) -> dict:
    """A config file's ``data`` with the relative paths of the files it reads (INPUT_KEYS,
    scorer files) made relative to ``folder``, the config file's; an INPUT_KEYS path with
    nothing there that names a file under ``shipped`` (the repository) is that file."""
    data = {k: dict(v) if isinstance(v, dict) else v for k, v in data.items()}
    for *sections, key in INPUT_KEYS:
        node = data
        for section in sections:
            node = node.get(section) if isinstance(node.get(section), dict) else {}
        if isinstance(node.get(key), str):
            node[key] = _beside(node[key], folder, shipped)
    # scorer files: "file.py:function" and "chemprop:model.pt" objectives, callable and
    # chemprop scorers' targets (a module name, "package.module:function", stays as it is)
    opt = data.get("optimize")
    if isinstance(opt, dict) and isinstance(opt.get("objective"), str):
        opt["objective"] = _file_beside(opt["objective"], folder)
    if isinstance(data.get("scorers"), dict):
        data["scorers"] = {k: dict(v) if isinstance(v, dict) else v
                           for k, v in data["scorers"].items()}
    for scorer in (data.get("scorers") or {}).values():
        if isinstance(scorer, dict) and isinstance(scorer.get("target"), str):
            if scorer.get("kind") == "callable":
                scorer["target"] = _file_beside(scorer["target"], folder)
            elif scorer.get("kind") == "chemprop":
                scorer["target"] = _beside(scorer["target"], folder)
    return data


def _beside(path: str, folder: Path, shipped: Path | None = None) -> str:
    if not path or Path(path).expanduser().is_absolute():
        return path
    if shipped is not None and not (folder / path).exists() and (shipped / path).is_file():
        return str(shipped / path)
    return str(folder / path)


def _file_beside(ref: str, folder: Path) -> str:
    """A scorer reference with its file read beside the config: ``file.py:function`` and
    ``chemprop:model.pt``; anything else as it is."""
    if ref.startswith("chemprop:"):
        return "chemprop:" + _beside(ref[len("chemprop:"):], folder)
    file, sep, function = ref.rpartition(":")
    return _beside(file, folder) + sep + function if sep and file.endswith(".py") else ref
