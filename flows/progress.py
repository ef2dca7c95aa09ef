"""Stage lines: what a flow is doing now, one line a stage, in its Prefect run log (INFO)
and, inside ``to_console``, on the console with the time since the run began::

    [  42.7 s] scoring 10,000 molecules

`molvae run` shows them (its console shows Prefect's own records only with --verbose); a
flow called from Python logs them to its run only, unless the caller asks for them."""

from __future__ import annotations

import contextlib
import sys
import time
from collections.abc import Callable, Iterator
from typing import TextIO

from prefect import get_run_logger

# Where stage lines go besides the run log, set by ``to_console`` for this process: not a
# context variable, since Prefect runs a flow's body in a context of its own.
_CONSOLE: list[Callable[[str], None]] = []


@contextlib.contextmanager
def to_console(stream: TextIO | None = None, started: float | None = None) -> Iterator[None]:
    """Within the block, ``stage`` lines also go to ``stream`` (default: stderr at the time
    of writing), timed from ``started`` (a ``time.perf_counter()``; default: now)."""
    t0 = time.perf_counter() if started is None else started

    def write(line: str) -> None:
        out = stream or sys.stderr  # not print(): a flow's log_prints turns it into a record
        out.write(f"[{time.perf_counter() - t0:7.1f} s] {line}\n")
        out.flush()

    _CONSOLE.append(write)
    try:
        yield
    finally:
        _CONSOLE.remove(write)


def stage(text: str) -> None:
    """Say that the run now does ``text`` ("scoring 10,000 molecules")."""
    get_run_logger().info(text)
    for write in _CONSOLE[-1:]:
        write(text)


def notice(text: str) -> None:
    """Warn about the run's settings (a WARNING record; on the console, "note: text")."""
    get_run_logger().warning(text)
    for write in _CONSOLE[-1:]:
        write(f"note: {text}")
