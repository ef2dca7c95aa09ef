"""`molvae evaluate`: MOSES-style metrics of generated molecules, with property plots."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from .common import StageBars, UsageError, add_model_option, check_input, load_model

SMILES_COLUMNS = ("smiles", "SMILES")


def add_evaluate_command(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("evaluate", help="MOSES-style metrics of generated molecules")
    parser.add_argument("generated", help="file with a smiles/SMILES column")
    parser.add_argument("--reference", help="reference set (default: shipped MOSES test sample)")
    parser.add_argument("--train", help="training set for novelty (default: the model's)")
    add_model_option(parser)
    parser.add_argument("--no-fcd", action="store_true")
    parser.add_argument("-o", "--out", help="JSON (default evaluation.json); plots beside it")
    parser.set_defaults(func=cmd_evaluate)


def cmd_evaluate(args: argparse.Namespace) -> None:
    import json

    import pandas as pd

    from molvae import metrics
    from molvae.config import SHIPPED_TEST
    from molvae.report import write_text

    t0 = time.perf_counter()
    generated = read_any_smiles(args.generated)
    reference = read_any_smiles(args.reference or str(SHIPPED_TEST))
    is_novel = novelty_test(args.train) if args.train else load_model(args.model).is_novel
    bars = StageBars()
    try:
        m, gen_rows, ref_rows = metrics.evaluate(generated, reference, is_novel,
                                                 with_fcd=not args.no_fcd,
                                                 cache_dir=".molvae_cache", progress=bars)
    finally:
        bars.close()
    # JSON has no NaN: a metric that could not be computed is null
    clean = {k: (None if isinstance(v, float) and v != v else v) for k, v in m.items()}
    out = write_text(json.dumps(clean, indent=2, allow_nan=False), args.out or "evaluation.json")
    plot = metrics.plot_distributions(gen_rows, ref_rows, out.with_suffix(".png"))
    print(pd.Series(m).to_string(float_format=lambda v: f"{v:.4f}"))
    print(f"-> {out}, {plot}", file=sys.stderr)
    print("seconds: " + ", ".join(f"{k} {v:.1f}" for k, v in bars.seconds.items())
          + f"; total {time.perf_counter() - t0:.1f}", file=sys.stderr)


def novelty_test(train_file: str):
    """``is_novel(canonical SMILES) -> [bool]`` against a training file."""
    from molvae.chem import canonical_smiles

    train = {canonical_smiles(s) for s in set(read_any_smiles(train_file))}
    return lambda smiles: [s not in train for s in smiles]


def read_any_smiles(path: str) -> list[str]:
    """SMILES from the first of the columns ``smiles`` and ``SMILES`` the file has."""
    from molvae.data import read_molecules
    from molvae.errors import DataError

    check_input(path)
    for column in SMILES_COLUMNS:
        try:
            return [s or "" for s in read_molecules(Path(path), column).smiles]
        except DataError as exc:
            if "no column" not in str(exc):
                raise
    raise UsageError(f"{path}: no 'smiles' or 'SMILES' column")
