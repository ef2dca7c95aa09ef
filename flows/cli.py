"""The `molvae` command line. Parses, validates, calls one molvae function per step.

Heavy imports (torch, rdkit, prefect, mlflow) happen inside the commands so that
``molvae --help`` stays fast. Errors the user can fix print one line on stderr and exit 1.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path

EXIT_USAGE = 2


class UserError(Exception):
    """A problem the user can fix; printed as one line, no traceback."""


def _setup_logging(verbose: bool) -> None:
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    for noisy in ("httpx", "alembic", "mlflow", "urllib3", "distributed", "asyncio"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def _progress(total: int | None, desc: str, unit: str = "mol"):
    from tqdm import tqdm

    return tqdm(total=total, desc=desc, unit=unit, dynamic_ncols=True, file=sys.stderr,
                disable=bool(os.environ.get("MOLVAE_NO_PROGRESS")), smoothing=0.05,
                mininterval=0.5 if sys.stderr.isatty() else 30.0)


# --------------------------------------------------------------------------- data


def cmd_data_fetch(args) -> None:
    from molvae.data import fetch_moses

    if args.dataset != "moses":
        raise UserError(f"unknown dataset {args.dataset!r} (available: moses)")
    paths = fetch_moses(args.dest, progress=lambda m: print(m, file=sys.stderr))
    for name, path in paths.items():
        print(f"{name}\t{path}")


def cmd_data_sample(args) -> None:
    from molvae.data import sample_rows

    n = sample_rows(args.src, args.dest, args.n, args.seed)
    print(f"wrote {n} rows to {args.dest}")


def cmd_data_prepare(args) -> None:
    from molvae.config import DataConfig
    from molvae.data import prepare

    cfg = DataConfig(path=args.path, smiles_column=args.smiles_column,
                     standardize=args.standardize, max_tokens=args.max_tokens,
                     cache_dir=args.cache_dir)
    bar = _progress(None, "clean+encode")

    def tick(done: int, total: int) -> None:
        bar.total = total
        bar.update(done - bar.n)

    ds = prepare(cfg, progress=tick)
    bar.close()
    rep = ds.report
    drops = ", ".join(f"{k} {v}" for k, v in rep["dropped"].items() if v) or "none"
    print(f"kept {rep['kept']} of {rep['rows']} molecules (dropped: {drops}); "
          f"vocabulary {len(ds.vocab)} tokens; cache key {ds.key}")


# --------------------------------------------------------------------------- train


class ProgressCallback:
    """tqdm bar with loss, reconstruction, KL and token accuracy (the CLI's only)."""

    def __init__(self) -> None:
        self.bar = None

    def on_train_start(self, info) -> None:
        self.info = info
        logging.getLogger("molvae").info(
            "training %s parameters on %s molecules (%s validation), device %s",
            f"{info['parameters']:,}", f"{info['train_size']:,}", f"{info['val_size']:,}",
            info["device"])

    def on_batch_end(self, step, m) -> None:
        if self.bar is None:
            self.bar = _progress(self.info["train_size"], "epoch 1")
        self.bar.update(m["epoch_progress"])
        if step % 5 == 0:
            self.bar.set_postfix(loss=f"{m['loss']:.2f}", recon=f"{m['recon']:.2f}",
                                 kl=f"{m['kl']:.1f}", acc=f"{m['token_acc']:.3f}",
                                 beta=f"{m['beta']:.3f}", refresh=False)

    def on_epoch_end(self, epoch, m) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None
        print(f"epoch {epoch}: val_loss {m['val_loss']:.3f} recon {m['val_recon']:.3f} "
              f"KL/mol {m['val_kl']:.2f} token_acc {m['val_token_acc']:.4f} "
              f"active_units {int(m['active_units'])} "
              f"exact_recon {m.get('val_exact_recon', float('nan')):.3f}", file=sys.stderr)
        self.info = dict(self.info)

    def on_train_end(self, result) -> None:
        if self.bar is not None:
            self.bar.close()


def _load_run_config(args):
    from molvae.config import load_config

    return load_config(getattr(args, "config", None), getattr(args, "set", None) or [])


def cmd_train(args) -> None:
    from molvae.train import train_model

    cfg = _load_run_config(args)
    if args.data:
        cfg.data.path = Path(args.data)
    if args.epochs:
        cfg.train.epochs = args.epochs
    if args.out:
        cfg.train.out_dir = Path(args.out)
    result = train_model(cfg.data, cfg.model, cfg.train, callbacks=[ProgressCallback()],
                         resume=args.resume,
                         data_progress=_data_progress())
    last = result.history[-1] if result.history else {}
    print(f"model: {result.best_checkpoint}  (last: {result.checkpoint}); "
          f"{result.seconds / 60:.1f} min; val exact recon "
          f"{last.get('val_exact_recon', float('nan')):.3f}")


def _data_progress():
    state = {"bar": None}

    def tick(done: int, total: int) -> None:
        if state["bar"] is None:
            state["bar"] = _progress(total, "clean+encode")
        state["bar"].update(done - state["bar"].n)
        if done >= total:
            state["bar"].close()

    return tick


# --------------------------------------------------------------------------- parser


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="molvae", description=__doc__.splitlines()[0])
    p.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    d = sub.add_parser("data", help="fetch, sample and prepare datasets")
    dsub = d.add_subparsers(dest="data_command", required=True, metavar="ACTION")
    f = dsub.add_parser("fetch", help="download a benchmark dataset (moses)")
    f.add_argument("dataset", help="dataset name: moses")
    f.add_argument("--dest", default="data/moses", help="target folder (default data/moses)")
    f.set_defaults(func=cmd_data_fetch)
    s = dsub.add_parser("sample", help="draw a seeded random sample of rows from a CSV")
    s.add_argument("src")
    s.add_argument("dest")
    s.add_argument("-n", type=int, required=True)
    s.add_argument("--seed", type=int, default=0)
    s.set_defaults(func=cmd_data_sample)
    pr = dsub.add_parser("prepare", help="clean, encode and cache a dataset; report drops")
    pr.add_argument("path")
    pr.add_argument("--smiles-column", default="SMILES")
    pr.add_argument("--standardize", action="store_true")
    pr.add_argument("--max-tokens", type=int, default=100)
    pr.add_argument("--cache-dir", default=".molvae_cache")
    pr.set_defaults(func=cmd_data_prepare)

    t = sub.add_parser("train", help="train a SELFIES VAE")
    _config_args(t)
    t.add_argument("--data", help="training file (default: the shipped MOSES sample)")
    t.add_argument("--epochs", type=int)
    t.add_argument("--out", help="output folder for checkpoints (default runs/train)")
    t.add_argument("--resume", help="checkpoint to continue from (e.g. runs/train/last.pt)")
    t.set_defaults(func=cmd_train)
    return p


def _config_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("-c", "--config", help="TOML config file (see molvae.toml)")
    p.add_argument("--set", action="append", metavar="SECTION.KEY=VALUE",
                   help="override a config value, e.g. --set train.lr=3e-4 (repeatable)")


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    _setup_logging(args.verbose)
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    try:
        args.func(args)
    except (UserError, ValueError, FileNotFoundError, RuntimeError) as exc:
        # ValueError covers ConfigError, DataError, VocabError, CheckpointError and bad
        # arguments; -v shows the traceback for a real bug.
        if args.verbose:
            raise
        msg = str(exc).strip() or type(exc).__name__
        print(f"molvae: error: {msg}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("molvae: interrupted", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
