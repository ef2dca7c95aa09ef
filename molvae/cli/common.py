"""What every command shares: logging, progress bars, the config and model options, reading
input molecules and checking output paths.

Flags reach the config one way. Each command with a config section writes a table
``{"section.key": args.flag}``; ``load_run_config`` turns the flags that were given into
``section.key=value`` overrides, applied after -c FILE and the user's ``--set`` ones, and
``molvae.config.load_config`` validates them, so a flag is checked exactly like the same value
in a TOML file or a ``--set`` (same message, the key named). A command whose default differs
from the config's (``molvae sample`` draws 1,000, not 10,000) passes it as ``defaults``, which
apply only where neither the file nor an override sets the key.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import shutil
import sys
import threading
import time
from collections.abc import Callable, Mapping
from pathlib import Path

from molvae.errors import MolvaeError

MODEL_HELP = "checkpoint (default: data/model/molvae_moses_cvae.pt, the shipped conditional model)"
NOISY_LOGGERS = ("httpx", "httpcore", "websockets", "graphviz", "matplotlib", "PIL", "alembic", "mlflow",
                 "urllib3", "distributed", "asyncio", "torch")


class UsageError(MolvaeError):
    """A problem the CLI itself finds in the command line (a flag, an input or output path)."""


# --------------------------------------------------------------------------- process set-up


def outside_imports(handler: Callable):
    """``handler`` (a signal handler that raises) run only outside Python's import machinery
    and outside finalizers (``__del__``).

    A signal that raises inside the import machinery can leave the global import lock held
    (in 3.11 a module lock's weakref callback takes it; an exception there is printed and
    dropped): another thread's next import then waits for ever, and the signal is lost.
    Seen as a ``molvae run`` that SIGTERM never ended (Prefect's event loop stuck importing
    anyio, the flow going on). One that raises inside a ``__del__`` (the garbage collector
    finalizing an asyncio transport) is printed and dropped as well, and the run goes on
    (seen in session 29: a SIGTERM'd optimize flow ran until killed). There the signal
    comes again 50 ms later, by then outside them."""
    def guarded(signum, frame):
        if frame is not None and (frame.f_code.co_filename.startswith("<frozen importlib")
                                  or _in_finalizer(frame)):
            threading.Timer(0.05, os.kill, (os.getpid(), signum)).start()
            return None
        return handler(signum, frame)

    guarded.guards = handler  # type: ignore[attr-defined]
    return guarded


def _in_finalizer(frame) -> bool:
    """Whether ``frame`` runs inside a ``__del__`` (its own or one it was called from)."""
    while frame is not None:
        if frame.f_code.co_name == "__del__":
            return True
        frame = frame.f_back
    return False


def setup_logging(verbose: bool) -> None:
    """The one place molvae configures logging (library code only logs)."""
    handler = _BarSafeHandler()
    handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
    logging.basicConfig(level=logging.DEBUG if verbose else logging.INFO, handlers=[handler])
    for noisy in NOISY_LOGGERS:
        logging.getLogger(noisy).setLevel(logging.WARNING)
    if not verbose:
        # Prefect's INFO records go to its UI (molvae run), not to this console
        for handler in logging.getLogger().handlers:
            handler.addFilter(_console_filter)


class _BarSafeHandler(logging.StreamHandler):
    """stderr, through tqdm while a progress bar is drawn there: a warning gets a line of its
    own above the bar (it was written at the end of the bar's line)."""

    def __init__(self) -> None:
        super().__init__(sys.stderr)

    def emit(self, record: logging.LogRecord) -> None:
        from tqdm import tqdm

        if not getattr(tqdm, "_instances", None):
            super().emit(record)
            return
        try:
            tqdm.write(self.format(record), file=self.stream)
        except Exception:  # noqa: BLE001 - logging must never raise
            self.handleError(record)


def _console_filter(record: logging.LogRecord) -> bool:
    return record.levelno >= logging.WARNING or not record.name.startswith("prefect")


def quiet_third_parties(verbose: bool) -> None:
    """MLflow/Prefect telemetry off and their advice hidden (a user's own settings win)."""
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    if not verbose:
        import warnings

        os.environ.setdefault("MLFLOW_LOGGING_LEVEL", "WARNING")  # its INFO: store migrations

        # MLflow's advice about type hints and input examples is not for our users.
        for advice in ("Add type hints", "An input example was not provided"):
            warnings.filterwarnings("ignore", message=f".*{advice}", category=UserWarning)
        warnings.filterwarnings("ignore", category=FutureWarning)


# --------------------------------------------------------------------------- progress


def progress_bar(total: int | None, desc: str, unit: str = "mol"):
    """A tqdm bar on stderr; MOLVAE_NO_PROGRESS=1 hides it, and logs (no tty) get few lines."""
    from tqdm import tqdm

    return tqdm(total=total, desc=desc, unit=unit, dynamic_ncols=True, file=sys.stderr,
                disable=bool(os.environ.get("MOLVAE_NO_PROGRESS")), smoothing=0.05,
                mininterval=0.5 if sys.stderr.isatty() else 30.0)


class StageBars:
    """``progress(stage, total) -> update``: one bar per stage, the previous one closed;
    ``seconds``: each stage's wall time, from its start to the next one's (or close)."""

    def __init__(self) -> None:
        self.bar = None
        self.seconds: dict[str, float] = {}
        self._stage: tuple[str, float] | None = None

    def __call__(self, stage: str, total: int) -> Callable[[int], object]:
        self.close()
        self.bar = progress_bar(total, stage)
        self._stage = (stage, time.perf_counter())
        return self.bar.update

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None
        if self._stage is not None:
            name, start = self._stage
            self.seconds[name] = self.seconds.get(name, 0.0) + time.perf_counter() - start
            self._stage = None


# --------------------------------------------------------------------------- options


def add_config_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-c", "--config", help="TOML config file (see molvae.toml)")
    parser.add_argument("--set", action="append", default=[], metavar="SECTION.KEY=VALUE",
                        help="override a config value, e.g. --set train.lr=3e-4 (repeatable)")


def seed(text: str) -> int:
    """An argparse type: a random seed, 0 <= seed < 2**63 (what every generator takes)."""
    value = int(text)  # argparse reports a ValueError as "invalid seed value"
    if not 0 <= value < 2**63:
        raise argparse.ArgumentTypeError(f"a seed is 0 to 2**63 - 1, got {text}")
    return value


def add_model_option(parser: argparse.ArgumentParser, note: str = "") -> None:
    parser.add_argument("--model", help=MODEL_HELP + note)


def toml_value(value: object) -> str:
    """``value`` written as TOML, the syntax ``--set`` values are parsed with."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)  # inf, -inf and nan are TOML floats
    if isinstance(value, list | tuple):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    if isinstance(value, Mapping):  # an inline table
        return "{" + ", ".join(f"{json.dumps(str(k))} = {toml_value(v)}"
                               for k, v in value.items()) + "}"
    if isinstance(value, Path):
        value = str(value)
    return json.dumps(value)  # JSON strings and numbers are TOML too


def as_overrides(values: Mapping[str, object]) -> list[str]:
    """``{"section.key": value}`` -> ``["section.key=value", ...]``, skipping None (not given)."""
    return [f"{key}={toml_value(v)}" for key, v in values.items() if v is not None]


def load_run_config(args: argparse.Namespace, flags: Mapping[str, object] | None = None,
                    defaults: Mapping[str, object] | None = None):
    """The validated RunConfig. Later wins: ``defaults`` (this command's own, where they
    differ from the config's), -c FILE, --set, then ``flags`` (``{"section.key": args.x}``)."""
    from molvae.config import load_config

    overrides = [*args.set, *as_overrides(flags or {})]
    cfg = load_config(args.config, overrides)
    unset = {k: v for k, v in (defaults or {}).items() if not _is_set(cfg, k)}
    if unset:  # neither the file nor an override set them: the command's defaults apply
        cfg = load_config(args.config, [*as_overrides(unset), *overrides])
    return cfg


def _is_set(cfg, key: str) -> bool:
    *sections, name = key.split(".")
    for section in sections:
        cfg = getattr(cfg, section)
    return name in cfg.model_fields_set


# --------------------------------------------------------------------------- files


def load_model(args: argparse.Namespace, cfg=None):
    """The model of ``--model``, else of the config's ``model_path`` (``cfg``, for commands
    that take -c FILE and --set), else the shipped one."""
    from molvae.checkpoint import load_model
    from molvae.config import SHIPPED_MODEL

    path = getattr(args, "model", None)
    if path is not None and not path.strip():
        raise UsageError("--model is empty; leave it out to use the shipped model")
    if path is None and cfg is not None and cfg.model_path is not None:
        path = str(cfg.model_path)
    return load_model(SHIPPED_MODEL if path is None else path)


def check_input(path: str | Path) -> Path:
    path = Path(path)
    if not path.is_file():
        raise UsageError(f"{path}: no such file")
    return path


def add_smiles_column_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--smiles-column", help="the input's SMILES column (default: SMILES, in any "
                        "case: smiles, Smiles)")


def read_smiles(path: str, smiles_column: str | None = None) -> list[str]:
    """Every row's SMILES ("" where empty), in file order; from ``smiles_column``, else from
    its SMILES column whatever the case (``data.smiles_column_of``)."""
    return read_input(path, smiles_column)[0]


def read_input(path: str, smiles_column: str | None = None):
    """``read_smiles``'s SMILES and the file's other columns (a DataFrame, or None)."""
    from molvae.data import read_molecules

    check_input(path)
    mols = read_molecules(Path(path), smiles_column or "SMILES", others=True)
    return [s or "" for s in mols.smiles], mols.others


def with_input_columns(df, others):
    """``df`` after the input file's other columns (an ID, a measured value), row for row; a
    column named as one of ``df``'s is kept as ``input_NAME``."""
    import pandas as pd

    if others is None or not len(others.columns):
        return df
    taken, names = {str(c).lower() for c in df.columns}, []
    for c in map(str, others.columns):  # case apart: spreadsheets and SQL ignore it
        name, k = c, 1
        while name.lower() in taken:
            name, k = f"input_{c}" + (f"_{k}" if k > 1 else ""), k + 1
        taken.add(name.lower())
        names.append(name)
    kept = others.set_axis(names, axis=1).reset_index(drop=True)
    return pd.concat([kept, df.reset_index(drop=True)], axis=1)


def check_output(out: str | None, suffixes: tuple[str, ...] = (".csv", ".csv.gz", ".parquet"),
                 default: str | None = None, source: str | None = None) -> str | None:
    """Refuse a bad output path (``out``, else ``default``; the input file ``source``
    itself) before any work is done; returns the path to write."""
    out = default if out is None else out
    if out is None:
        return None
    if source is not None and Path(out).resolve() == Path(source).resolve():
        raise UsageError(f"output {out!r} is the input file; write to another file")
    if not out.lower().endswith(suffixes):  # OUT.CSV is a CSV file too
        names = " or ".join([", ".join(suffixes[:-1]), suffixes[-1]] if len(suffixes) > 2 else suffixes)
        raise UsageError(f"output {out!r} must end in {names}")
    path = Path(out)
    if path.is_dir():
        raise UsageError(f"output {out!r} is a directory")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except (FileExistsError, NotADirectoryError):
        raise UsageError(f"output {out!r}: a parent of it is a file, not a folder") from None
    except OSError as exc:
        raise UsageError(f"output {out!r}: cannot create its folder ({exc.strerror})") from None
    if not os.access(path.parent, os.W_OK) or (path.exists() and not os.access(path, os.W_OK)):
        raise UsageError(f"output {out!r}: not writable")
    return out


def refuse_shipped(path: str | Path, what: str) -> None:
    """A model written over a shipped one (in data/model/) is refused: ``what`` to write elsewhere."""
    from molvae.config import SHIPPED_MODEL

    path = Path(path)
    if path.is_file() and path.resolve().parent == SHIPPED_MODEL.resolve().parent:
        raise UsageError(f"{path} is a shipped model, not changed in place: write {what} to a "
                         "file of your own (-o mine.pt)")


def copy_companions(src: str | Path, dest: str | Path) -> None:
    """A model written from ``src`` to another folder (``dest``) gets the training-set hashes
    file it names, from beside ``src``, so that it judges novelty."""
    from molvae.checkpoint import read_checkpoint

    ref = read_checkpoint(dest).get("train_hashes_file")
    name = str(ref.get("name", "")) if isinstance(ref, dict) else ""
    file, target = Path(src).parent / name, Path(dest).parent / name
    if name and file.is_file() and not target.exists():
        shutil.copyfile(file, target)
        print(f"copied {name} beside {Path(dest).name}: the training-set hashes it judges "
              "novelty by", file=sys.stderr)


def write_table(df, out: str | None, default: str) -> str:
    from molvae.report import write_table

    return str(write_table(df, out or default))
