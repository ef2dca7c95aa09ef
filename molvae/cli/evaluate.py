"""`molvae evaluate`: MOSES-style metrics of generated molecules, with property plots."""

from __future__ import annotations

import argparse
import sys
import time

from .common import (
    StageBars,
    UsageError,
    add_model_option,
    add_smiles_column_option,
    check_output,
    load_model,
    read_smiles,
)


def add_evaluate_command(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("evaluate", help="MOSES-style metrics of generated molecules")
    parser.add_argument("generated", help="file with a SMILES or smiles column (what "
                        "`molvae sample` writes)")
    add_smiles_column_option(parser)
    parser.add_argument("--reference", help="reference set (default: shipped MOSES test sample)")
    parser.add_argument("--train", help="training set for novelty (default: the model's)")
    add_model_option(parser)
    parser.add_argument("--no-fcd", action="store_true",
                        help="skip the Frechet ChemNet Distance (its ChemNet pass is the slow part)")
    parser.add_argument("-o", "--out", help="JSON (default evaluation.json); plots beside it")
    parser.set_defaults(func=cmd_evaluate)


def cmd_evaluate(args: argparse.Namespace) -> None:
    import json
    import math

    import pandas as pd

    from molvae import metrics
    from molvae.config import SHIPPED_TEST
    from molvae.report import write_text

    t0 = time.perf_counter()
    out = check_output(args.out, (".json",), default="evaluation.json")
    generated = read_smiles(args.generated, args.smiles_column)
    reference = _read_other(args.reference, "--reference") if args.reference else \
        read_smiles(str(SHIPPED_TEST))
    is_novel = novelty_test(args.train) if args.train else load_model(args).novelty_test()
    bars = StageBars()
    try:
        m, gen_rows, ref_rows = metrics.evaluate(generated, reference, is_novel,
                                                 with_fcd=not args.no_fcd,
                                                 cache_dir=".molvae_cache", progress=bars)
    finally:
        bars.close()
    # JSON has no NaN: a metric that could not be computed is null
    clean = {k: (None if isinstance(v, float) and v != v else v) for k, v in m.items()}
    out = write_text(json.dumps(clean, indent=2, allow_nan=False), out)
    plot = metrics.plot_distributions(gen_rows, ref_rows, out.with_suffix(".png"))
    print(pd.Series(m).to_string(float_format=lambda v: f"{v:.4f}"))
    n = len(generated)
    if not m["validity"]:
        print(f"note: none of the {n:,} molecules in {args.generated} is valid; every metric "
              "but validity is undefined (null)", file=sys.stderr)
    elif n < 10_000:
        fcd = "" if args.no_fcd or math.isnan(m["fcd"]) else (
            ", and FCD is biased upward below ~10,000 (compare FCDs at equal sizes)")
        print(f"note: {n:,} molecules: uniqueness@10k is over all of them (as MOSES computes "
              f"it){fcd}", file=sys.stderr)
    print(f"-> {out}, {plot}", file=sys.stderr)
    print("seconds: " + ", ".join(f"{k} {v:.1f}" for k, v in bars.seconds.items())
          + f"; total {time.perf_counter() - t0:.1f}", file=sys.stderr)


def novelty_test(train_file: str):
    """``is_novel(canonical SMILES) -> [bool]`` against a training file."""
    from molvae.chem import canonical_smiles

    train = {canonical_smiles(s) for s in set(_read_other(train_file, "--train"))} - {None}
    if not train:
        raise UsageError(f"{train_file}: the training set has no valid molecule")
    return lambda smiles: [s not in train for s in smiles]


def _read_other(path: str, flag: str) -> list[str]:
    """A --reference or --train file's SMILES, from its SMILES column in any case
    (--smiles-column names the generated file's)."""
    from molvae.data import COLUMN_HINT
    from molvae.errors import DataError

    try:
        return read_smiles(path)
    except DataError as exc:  # the hint of the generated file's column does not apply here
        raise UsageError(str(exc).replace(COLUMN_HINT, f"a {flag} file is read by its SMILES "
                                          "column (any case: SMILES, smiles)")) from None
