"""The `molvae` command line: parse, validate, call one molvae function per step.

Layout: ``common`` (logging, progress bars, config and model options, input and output
files) and one module per command group: ``data``, ``train``, ``generate`` (sample, prior,
interpolate, neighbors, reconstruct, encode), ``evaluate``, ``optimize``, ``run`` (run, log).
Library modules are imported inside the commands, so ``molvae --help`` stays fast, and only
``molvae run`` and ``molvae log`` import ``flows`` (and with it Prefect and MLflow).

Error contract (``main``):

- a ``MolvaeError`` (bad input, file or setting; ``common.UsageError`` for what the CLI
  itself finds) prints one line, ``molvae: error: <message>``, and exits 1; with -v its
  traceback comes first;
- Ctrl-C prints ``molvae: interrupted`` and exits 130; SIGTERM unwinds the same way (so
  child servers such as Prefect's temporary one are stopped) and exits 143;
- any other exception is a bug in molvae: its traceback is printed, then a line asking to
  report it, and the exit status is 1 (``main`` returns rather than re-raises, so callers
  in Python get an exit status either way);
- argparse's own usage errors exit 2, as usual.
"""

from __future__ import annotations

import argparse
import errno
import signal
import sys
import threading
import traceback

import molvae
from molvae.errors import MolvaeError

from .common import outside_imports, quiet_third_parties, setup_logging
from .data import add_data_commands
from .evaluate import add_evaluate_command
from .generate import add_generate_commands
from .optimize import add_optimize_command
from .run import add_run_commands
from .steer import add_steer_command
from .train import add_train_command

__all__ = ["main", "build_parser"]

BUG_LINE = "molvae: this is a bug in molvae; please report it with the traceback above"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="molvae", description="Generate, check and optimize molecules with a SELFIES VAE; "
        "`molvae COMMAND --help` for each command, the README for the whole pipeline.")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    parser.add_argument("--version", action="version", version=f"molvae {molvae.__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    add_data_commands(sub)
    add_train_command(sub)
    add_steer_command(sub)
    add_run_commands(sub)
    add_generate_commands(sub)
    add_evaluate_command(sub)
    add_optimize_command(sub)
    return parser


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised where the program is, so every cleanup runs as for Ctrl-C."""


# The signal that arrived during this main() call, if any: a library can turn the
# KeyboardInterrupt it raises into an error of its own without chaining it (pydantic's
# serializer, Ctrl-C during Prefect's settings dump), and it still counts as the interruption.
_SIGNALLED: list[type[KeyboardInterrupt]] = []


def _terminate(signum, frame):
    _SIGNALLED.append(Terminated)
    raise Terminated()


def _interrupt(signum, frame):
    _SIGNALLED.append(KeyboardInterrupt)
    raise KeyboardInterrupt()


def _parse(argv: list[str] | None) -> argparse.Namespace:
    """The arguments; an unknown one is refused with the usage of the command given (argparse
    shows the top-level usage for ``molvae neighbors CCO c1ccccc1``)."""
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    if extra:
        command = parser
        while sub := next((a for a in command._actions
                           if isinstance(a, argparse._SubParsersAction)), None):
            command = sub.choices[getattr(args, sub.dest)]
        command.error(f"unrecognized arguments: {' '.join(extra)}")
    return args


def main(argv: list[str] | None = None) -> int:
    args = _parse(argv)
    setup_logging(args.verbose)
    quiet_third_parties(args.verbose)
    in_main = threading.current_thread() is threading.main_thread()
    _SIGNALLED.clear()
    previous = ((signal.signal(signal.SIGTERM, outside_imports(_terminate)),
                 signal.signal(signal.SIGINT, outside_imports(_interrupt))) if in_main else None)
    try:
        try:
            args.func(args)
        finally:
            _close_bars()  # an error is printed on a line of its own, not after a bar
    except Terminated:
        print("molvae: terminated", file=sys.stderr)
        return 143
    except MolvaeError as exc:
        if args.verbose:
            traceback.print_exc()
        print(f"molvae: error: {_one_line(exc)}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("molvae: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:
        interrupt = _while_interrupted(exc) or (_SIGNALLED[-1]() if _SIGNALLED else None)
        if interrupt is not None:  # a library's cleanup failed on the way out of a Ctrl-C
            if args.verbose:
                traceback.print_exc()
            terminated = isinstance(interrupt, Terminated)
            print(f"molvae: {'terminated' if terminated else 'interrupted'}", file=sys.stderr)
            return 143 if terminated else 130
        if isinstance(exc, OSError) and exc.errno in _USER_OS_ERRORS and exc.filename:
            if args.verbose:
                traceback.print_exc()  # a full disk or a folder you may not write: not a bug
            print(f"molvae: error: {exc.filename}: {exc.strerror}", file=sys.stderr)
            return 1
        traceback.print_exc()
        print(BUG_LINE, file=sys.stderr)
        return 1
    finally:
        if in_main:
            signal.signal(signal.SIGTERM, previous[0])
            signal.signal(signal.SIGINT, previous[1])
    return 0


# A file the machine refused (permissions, a full or read-only disk, a name that is a folder):
# the user's to fix, said in one line.
_USER_OS_ERRORS = {errno.EACCES, errno.EPERM, errno.ENOSPC, errno.EROFS, errno.EDQUOT,
                   errno.EISDIR, errno.ENOTDIR}


def _close_bars() -> None:
    """Close the progress bars a failing command left open (each ends its line)."""
    from tqdm import tqdm

    for bar in list(getattr(tqdm, "_instances", ())):
        bar.close()


def _while_interrupted(exc: BaseException) -> KeyboardInterrupt | None:
    """The Ctrl-C or SIGTERM (``Terminated``) being handled when ``exc`` was raised, if any."""
    seen: set[int] = set()
    while exc is not None and id(exc) not in seen:
        if isinstance(exc, KeyboardInterrupt):
            return exc
        seen.add(id(exc))
        exc = exc.__cause__ or exc.__context__
    return None


def _one_line(exc: BaseException) -> str:
    message = " ".join(line.strip() for line in str(exc).splitlines() if line.strip())
    return message or type(exc).__name__
