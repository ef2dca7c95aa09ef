"""`molvae data fetch|sample|prepare|index|pairs`: benchmark sets, seeded subsets, the
cleaned cache, a known set's fingerprints, the sampler's pairs to distill."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from molvae.errors import DataError

from .common import (
    StageBars,
    UsageError,
    add_config_options,
    add_model_option,
    check_input,
    check_output,
    load_model,
    load_run_config,
    progress_bar,
    seed,
)

DATASETS = ("moses",)


def add_data_commands(sub: argparse._SubParsersAction) -> None:
    data_parser = sub.add_parser("data", help="fetch, sample and prepare datasets")
    actions = data_parser.add_subparsers(dest="data_command", required=True, metavar="ACTION")

    fetch_parser = actions.add_parser("fetch", help="download a benchmark dataset (moses)")
    fetch_parser.add_argument("dataset", help="dataset name: " + ", ".join(DATASETS))
    fetch_parser.add_argument("--dest", default="data/moses",
                              help="target folder (default data/moses)")
    fetch_parser.set_defaults(func=cmd_data_fetch)

    sample_parser = actions.add_parser("sample", help="draw a seeded random sample of rows from a CSV")
    sample_parser.add_argument("src")
    sample_parser.add_argument("dest")
    sample_parser.add_argument("-n", type=int, required=True, help="rows to draw")
    sample_parser.add_argument("--seed", type=seed, default=0)
    sample_parser.add_argument("--exclude", help="CSV whose first-column values are never drawn")
    sample_parser.set_defaults(func=cmd_data_sample)

    prepare_parser = actions.add_parser("prepare",
                                        help="clean, encode and cache a dataset; report drops")
    add_config_options(prepare_parser)
    prepare_parser.add_argument("path", help="molecule file (data.path)")
    prepare_parser.add_argument("--smiles-column", help="data.smiles_column (default SMILES)")
    prepare_parser.add_argument("--standardize", action="store_true", default=None,
                                help="largest fragment + neutralize (data.standardize)")
    prepare_parser.add_argument("--max-tokens", type=int,
                                help="data.max_tokens (default 100)")
    prepare_parser.add_argument("--cache-dir", help="data.cache_dir (default .molvae_cache)")
    prepare_parser.add_argument("--properties", metavar="NAMES",
                                help="comma-separated RDKit properties to compute and keep "
                                     "(a conditional model's conditions, e.g. mw,logp,qed)")
    prepare_parser.add_argument("--vocab-of", metavar="MODEL",
                                help="encode with MODEL's vocabulary (data to fine-tune MODEL "
                                     "on; molecules with other tokens are dropped)")
    prepare_parser.add_argument("--export", metavar="TOKENS.npz",
                                help="also write a compressed token file that `--data` (train) "
                                     "takes as it is: no source file, no RDKit needed (GPU runs)")
    prepare_parser.set_defaults(func=cmd_data_prepare)

    index_parser = actions.add_parser(
        "index", help="fingerprint a known-molecule file once, beside it (nearest-molecule "
                      "search: read by every run that names the file)")
    index_parser.add_argument("path", help="molecule file (CSV, optionally gzipped), e.g. "
                                           "score.known_molecules")
    index_parser.add_argument("--smiles-column", default="SMILES",
                              help="its SMILES column (default SMILES)")
    index_parser.set_defaults(func=cmd_data_index)

    pairs_parser = actions.add_parser(
        "pairs", help="prior draws and what refinement makes of them: train.distill's file")
    pairs_parser.add_argument("-n", type=int, required=True, help="draws (e.g. 100000)")
    pairs_parser.add_argument("-o", "--out", required=True, help="pairs file (.npz)")
    pairs_parser.add_argument("--seed", type=seed, default=1, help="draw seed (default 1: "
                              "not the evaluation's 0)")
    pairs_parser.add_argument("--refine", type=int, help="refinement passes (default: the "
                              "model's stored choice; a model that stores none needs this)")
    add_model_option(pairs_parser)
    pairs_parser.set_defaults(func=cmd_data_pairs)


def cmd_data_fetch(args: argparse.Namespace) -> None:
    from molvae.moses import fetch_moses

    if args.dataset not in DATASETS:
        raise UsageError(f"unknown dataset {args.dataset!r} (available: {', '.join(DATASETS)})")
    paths = fetch_moses(args.dest, progress=lambda m: print(m, file=sys.stderr))
    for name, path in paths.items():
        print(f"{name}\t{path}")


def cmd_data_sample(args: argparse.Namespace) -> None:
    from molvae.moses import sample_rows

    if args.n < 1:
        raise UsageError(f"-n must be a positive number of rows, got {args.n}")
    for name in (args.src, args.dest, args.exclude):
        if name is not None and not name.lower().endswith((".csv", ".csv.gz")):
            raise UsageError(f"{name}: molvae data sample reads and writes CSV (.csv or .csv.gz)")
    if Path(args.dest).resolve() == Path(args.src).resolve():
        raise UsageError(f"{args.dest} is the file sampled from; write the sample to another file")
    n = sample_rows(check_input(args.src), args.dest, args.n, args.seed,
                    check_input(args.exclude) if args.exclude else None)
    print(f"wrote {n} rows to {args.dest}")


def cmd_data_prepare(args: argparse.Namespace) -> None:
    from molvae.data import export_tokens, prepare

    cfg = load_run_config(args, {
        "data.path": args.path,
        "data.smiles_column": args.smiles_column,
        "data.standardize": args.standardize,
        "data.max_tokens": args.max_tokens,
        "data.cache_dir": args.cache_dir,
    })
    names = [p.strip() for p in (args.properties or "").split(",") if p.strip()]
    vocab = None
    if args.vocab_of:
        from molvae.checkpoint import read_checkpoint
        from molvae.vocab import Vocab

        vocab = Vocab(read_checkpoint(check_input(args.vocab_of))["vocab"])
    bars = StageBars()
    try:
        ds = prepare(cfg.data, vocab=vocab, compute_properties=names, progress=bars)
    finally:
        bars.close()
    report = ds.report
    drops = ", ".join(f"{k} {v}" for k, v in report["dropped"].items() if v) or "none"
    print(f"kept {report['kept']} of {report['rows']} molecules (dropped: {drops}); "
          f"vocabulary {len(ds.vocab)} tokens; cache key {ds.key}")
    if args.export:
        path = export_tokens(ds, args.export)
        print(f"token file {path} ({path.stat().st_size / 1e6:.1f} MB)")


def cmd_data_index(args: argparse.Namespace) -> None:
    from molvae.similarity import FingerprintIndex

    path = check_input(args.path)
    with progress_bar(None, "fingerprints") as bar:
        index = FingerprintIndex.from_file(path, args.smiles_column, progress=bar.update)
    unparsed = int((~index.bits.any(1)).sum())  # no fingerprint: never anyone's nearest
    if unparsed == len(index):
        raise DataError(f"{path}: none of its {len(index):,} rows is a valid molecule; "
                        "nothing to index")
    out = index.write_beside(path, args.smiles_column)
    rows = "row" if unparsed == 1 else "rows"
    note = f" ({unparsed:,} {rows} not a valid molecule: never a match)" if unparsed else ""
    print(f"{len(index):,} molecules indexed{note}: {out} ({out.stat().st_size / 1e6:.1f} MB)")


def cmd_data_pairs(args: argparse.Namespace) -> None:
    from molvae.distill import make_pairs, save_pairs
    from molvae.generate import settings

    if args.n < 1:
        raise UsageError("-n must be at least 1")
    check_output(args.out, (".npz",))
    cfg = settings(**({} if args.refine is None else {"refine": args.refine}))
    loaded = load_model(args)
    with progress_bar(args.n, "pairs") as bar:
        pairs = make_pairs(loaded, args.n, args.seed, cfg, progress=bar.update)
    path = save_pairs(pairs, loaded.vocab, args.out)
    print(f"{len(pairs):,} pairs of {args.n:,} draws -> {path} ({path.stat().st_size / 1e6:.1f} MB); "
          f"train on them with --set train.distill={path} (and --init-from the model)")
