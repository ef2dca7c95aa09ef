"""Files written whole or not at all."""

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
    finally:
        tmp.unlink(missing_ok=True)


def make_writable_folder(folder: str | Path) -> None:
    """Create ``folder`` (and its parents) and check a file can be written in it; raises
    OSError (its ``strerror`` says why) when not: before any work that would write there."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    probe = folder / f".write_probe{os.getpid()}"
    probe.touch()
    probe.unlink()
