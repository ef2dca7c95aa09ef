"""`molvae optimize`: search the latent space for molecules that score high on an objective."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from .common import (
    UsageError,
    add_config_options,
    add_model_option,
    check_output,
    load_model,
    load_run_config,
    progress_bar,
    write_table,
)

SEEDED_METHODS = ("cmaes", "gradient", "constrained")  # the methods that read optimize.seeds


def add_optimize_command(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("optimize", help="optimize a property in latent space")
    add_config_options(parser)
    parser.add_argument("--method", choices=["gradient", "cmaes", "constrained", "random", "turbo", "ga"],
                        help="optimize.method (default cmaes)")
    parser.add_argument("--objective", help="optimize.objective: a property (qed, plogp, ...), "
                        "'desirability', a [scorers] name, a task (pmo:median1; see "
                        "--list-tasks), a callable (file.py:function, package.module:function) "
                        "or chemprop:MODEL_FILE")
    parser.add_argument("--list-tasks", action="store_true",
                        help="list the built-in tasks (PMO/GuacaMol) and exit")
    parser.add_argument("--oracle-budget", type=int, help="optimize.oracle_budget (default 2000)")
    parser.add_argument("--seed-smiles", nargs="+", help="seed molecules (optimize.seeds): "
                        "constrained needs them, cmaes and gradient start from their codes")
    parser.add_argument("--similarity-threshold", type=float,
                        help="Tanimoto to the seed (optimize.similarity_threshold)")
    parser.add_argument("-o", "--out", help=".csv or .parquet (default optimized.csv; every "
                        "call beside it, *_calls.csv)")
    add_model_option(parser)
    parser.set_defaults(func=cmd_optimize)


def cmd_optimize(args: argparse.Namespace) -> None:
    from molvae.data import read_molecules
    from molvae.optimization import Objective, optimize

    if args.list_tasks:
        from molvae.optimization.scorers import builtin_tasks

        for name, task in builtin_tasks().items():
            print(f"pmo:{name}\t{task.kind}" + (f" ({task.combine} mean of {len(task.terms)} terms)"
                                                if task.kind == "mpo" else f" {task.target}"))
        return

    cfg = load_run_config(args, {
        "optimize.method": args.method,
        "optimize.objective": args.objective,
        "optimize.oracle_budget": args.oracle_budget,
        "optimize.seeds": args.seed_smiles,
        "optimize.similarity_threshold": args.similarity_threshold,
    })
    t0 = time.perf_counter()
    out = check_output(args.out, default="optimized.csv")
    if args.seed_smiles and cfg.optimize.method not in SEEDED_METHODS:
        raise UsageError(f"--seed-smiles: method {cfg.optimize.method} does not use seed "
                         f"molecules ({', '.join(SEEDED_METHODS)} do)")
    opt = cfg.optimize
    Objective.from_config(opt, cfg.score.desirability, cfg.scorers)  # fail before any work
    loaded = load_model(args, cfg)
    known = (read_molecules(cfg.data.path, cfg.data.smiles_column, limit=opt.surrogate_size).smiles
             if opt.method == "gradient" else [])
    known = [s for s in known if s]
    if known:  # before the bar moves: the gradient method's surrogate (~30 s on 2 cores)
        print(f"gradient: scoring {len(known):,} known molecules and fitting a surrogate to "
              "them first", file=sys.stderr)
    bar = progress_bar(opt.oracle_budget, f"optimize ({opt.method})", "call")
    try:  # closed before an error's line, not drawn again after it
        result = optimize(loaded, opt, cfg.score.desirability, known, scorers=cfg.scorers,
                          progress=lambda done, total: bar.update(done - bar.n))
    finally:
        bar.close()
    path = write_table(result.candidates, out, "optimized.csv")
    for _, r in result.candidates.head(opt.top_k).iterrows():
        print(f"{r.score:.4f}\t{r.smiles}")
    table = Path(path)
    calls = write_table(result.call_log(), str(table.with_name(table.stem + "_calls.csv")), "")
    failed = f", {result.unscorable} unscorable" if result.unscorable else ""
    if result.oracle_calls and result.unscorable == result.oracle_calls:
        print(f"molvae: warning: the objective {opt.objective!r} gave no number for any of the "
              f"{result.oracle_calls} molecules (NaN, infinite or None for each); check what it returns",
              file=sys.stderr)
    print(f"{len(result.candidates)} candidates, {result.oracle_calls} oracle calls{failed}, "
          f"AUC top-10 {result.auc_top10:.3f}, search {result.seconds:.1f} s, total "
          f"{time.perf_counter() - t0:.1f} s -> {path} "
          f"(every call: {calls})", file=sys.stderr)
