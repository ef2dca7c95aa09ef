"""`molvae steer`: fit a conditional model's steering head on its own request draws."""

from __future__ import annotations

import argparse
import time

from .common import (
    StageBars,
    UsageError,
    add_model_option,
    check_output,
    copy_companions,
    load_model,
    refuse_shipped,
    seed,
)


def add_steer_command(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("steer", help="fit a conditional model's steering head: requests "
                            "aimed at their properties token by token (molvae.steering)")
    add_model_option(parser, " (changed in place unless -o; a shipped model needs -o)")
    parser.add_argument("-o", "--out", help="write the steered model here instead (.pt)")
    parser.add_argument("-n", "--molecules", type=int, default=100_000,
                        help="request draws to fit on (default 100,000: ~3 minutes of drawing "
                             "and ~18 of fitting on two cores)")
    parser.add_argument("--epochs", type=int, default=4, help="passes over the draws (default 4)")
    parser.add_argument("--strength", type=float, default=10.0,
                        help="the steering strength the model's requests use by default "
                             "(generate.condition_steer, 0-100; default 10)")
    parser.add_argument("--seed", type=seed, default=0)
    parser.add_argument("--workers", type=int, help="processes drawing requests (default: all cores)")
    parser.set_defaults(func=cmd_steer)


def cmd_steer(args: argparse.Namespace) -> None:
    from molvae.steering_fit import collect, fit, steerable, store

    if args.molecules < 1000:
        raise UsageError(f"--molecules {args.molecules}: fit on at least 1,000 request draws")
    if not 1 <= args.epochs <= 100:
        raise UsageError(f"--epochs must be 1 to 100, got {args.epochs}")
    if not 0 <= args.strength <= 100:
        raise UsageError(f"--strength must be 0 to 100, got {args.strength}")
    if args.workers is not None and args.workers < 1:
        raise UsageError(f"--workers must be >= 1, got {args.workers}")
    loaded = load_model(args)
    out = check_output(str(loaded.path) if args.out is None else args.out, (".pt",))
    refuse_shipped(out, "the steered model")  # in place, or -o naming a shipped model
    names = steerable(loaded)  # before the bars: a model that cannot be steered says so
    t0, bars = time.perf_counter(), StageBars()
    try:
        draws = collect(loaded, args.molecules, args.seed, args.workers, progress=bars)
        head, report = fit(loaded, draws, args.epochs, seed=args.seed, progress=bars)
    finally:
        bars.close()
    path = store(loaded.path, out, head, names, args.strength, report)
    copy_companions(loaded.path, path)
    errors = ", ".join(f"{k} {v:.3g}" for k, v in report["end_mae"].items())
    print(f"fitted a steering head on {len(draws['z']):,} request draws in "
          f"{time.perf_counter() - t0:.0f} s; held-out error of its prediction at each "
          f"molecule's end: {errors}")
    print(f"wrote {path}: its requests steer at strength {args.strength:g} (`molvae sample "
          f"--model {path} --condition logp=2`; --steer 0 turns it off)")
