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
    if args.init_from:
        cfg.train.init_from = Path(args.init_from)
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


# --------------------------------------------------------------------------- generation


def _load(args):
    from molvae.config import SHIPPED_MODEL
    from molvae.train import load_model

    return load_model(args.model or SHIPPED_MODEL)


def _score_cfg(args):
    from molvae.config import load_config

    return load_config(getattr(args, "config", None), getattr(args, "set", None) or []).score


def _write(df, out: str | None, default: str) -> str:
    from molvae.report import write_table

    path = write_table(df, out or default)
    return str(path)


def _check_out(out: str | None) -> None:
    if out and not (out.endswith(".csv") or out.endswith(".parquet")):
        raise UserError(f"output {out!r} must end in .csv or .parquet")


def cmd_sample(args) -> None:
    from molvae import generate

    _check_out(args.out)
    if args.n <= 0:
        raise UserError(f"-n must be a positive number of molecules, got {args.n}")
    if args.temperature <= 0:
        raise UserError(f"--temperature must be > 0, got {args.temperature}")
    if args.prior_width is not None and not args.prior_width > 0:
        raise UserError(f"--prior-width must be > 0, got {args.prior_width}")
    lm = _load(args)
    generate.resolve_prior(lm, args.prior)  # fail before the progress bar appears
    bar = _progress(args.n, "sample")
    df = generate.sample(lm, args.n, args.batch_size, args.temperature, args.greedy, args.seed,
                         args.max_length, args.unique, progress=bar.update, prior=args.prior,
                         prior_width=args.prior_width)
    bar.close()
    df = _annotate(df, args, lm)
    path = _write(df, args.out, "samples.csv")
    print(f"{len(df)} molecules -> {path}: valid {df.valid.mean():.2%}, unique "
          f"{df.unique.sum() / max(df.valid.sum(), 1):.2%}, novel "
          f"{(df.novel & df.unique).sum() / max(df.unique.sum(), 1):.2%} of unique")


def cmd_prior(args) -> None:
    from molvae import generate
    from molvae.train import store_prior

    if args.out and not args.out.endswith(".pt"):
        raise UserError(f"output {args.out!r} must end in .pt")
    lm = _load(args)
    _read_input.col = args.smiles_column
    smiles = _read_input(args.data)
    prior = generate.fit_prior(lm, smiles, args.n, args.seed, width=args.width)
    path = store_prior(lm.path, prior, args.out)
    print(f"stored {len(prior['mu'])} posterior codes (width {args.width:g}) of {args.data} in {path}; "
          "`molvae sample` now draws from them (--prior normal for N(0, I))")


def _annotate(df, args, lm):
    from molvae import generate

    bar = _progress(len(df), "score")
    out = generate.annotate(df, _score_cfg(args), lm, progress=bar.update)
    bar.close()
    return out


def cmd_interpolate(args) -> None:
    from molvae import generate

    _check_out(args.out)
    lm = _load(args)
    df = _annotate(generate.interpolate(lm, args.molecules, args.steps, args.method), args, lm)
    path = _write(df, args.out, "interpolation.csv")
    if args.image:
        from molvae.report import interpolation_strips

        interpolation_strips(df, args.image)
    for _, r in df.iterrows():
        print(f"{int(r.segment)}\t{r.t:.2f}\t{r.smiles}")
    print(f"-> {path}", file=sys.stderr)


def cmd_neighbors(args) -> None:
    from molvae import generate

    _check_out(args.out)
    lm = _load(args)
    df = generate.neighbors(lm, args.smiles, args.radii, args.per_radius, args.seed)
    df = _annotate(df, args, lm)
    path = _write(df, args.out, "neighbors.csv")
    for r, g in df.groupby("radius"):
        print(f"radius {r}: {g.valid.sum()} valid, {g.smiles[g.valid].nunique()} distinct, "
              f"mean similarity {g.similarity.mean():.3f}")
    print(f"-> {path}", file=sys.stderr)


def _read_input(path: str) -> list[str]:
    from molvae.data import read_molecules

    return [s or "" for s in read_molecules(path, getattr(_read_input, "col", "SMILES")).smiles]


def cmd_reconstruct(args) -> None:
    from molvae import generate

    _check_out(args.out)
    _read_input.col = args.smiles_column
    smiles = _read_input(args.file)
    lm = _load(args)
    bar = _progress(len(smiles), "reconstruct")
    df = generate.reconstruct(lm, smiles, progress=bar.update)
    bar.close()
    path = _write(df, args.out, "reconstructed.csv")
    bad = int((df.error != "").sum())
    print(f"exact reconstruction {df.exact_match.mean():.2%} of {len(df)} molecules "
          f"({bad} could not be encoded) -> {path}")


def cmd_encode(args) -> None:
    import numpy as np

    from molvae import generate

    _read_input.col = args.smiles_column
    smiles = _read_input(args.file)
    out = args.out or "latent.parquet"
    if not (out.endswith(".parquet") or out.endswith(".npz")):
        raise UserError(f"output {out!r} must end in .parquet or .npz")
    df = generate.encode(_load(args), smiles)
    if out.endswith(".npz"):
        mu = df.filter(like="mu_").to_numpy(np.float32)
        var = df.filter(like="var_").to_numpy(np.float32)
        tmp = out + ".tmp.npz"
        np.savez(tmp, mu=mu, var=var, elbo=df.elbo.to_numpy(), smiles=np.array(df.smiles))
        os.replace(tmp, out)
    else:
        _write(df, out, out)
    print(f"encoded {int((df.error == '').sum())} of {len(df)} molecules -> {out} "
          f"(median ELBO {df.elbo.median():.2f}; higher ood_score = more unusual)")


def cmd_evaluate(args) -> None:
    import json

    import pandas as pd

    from molvae import metrics
    from molvae.config import SHIPPED_TEST

    gen = _read_table_smiles(args.generated)
    ref = _read_table_smiles(args.reference or str(SHIPPED_TEST))
    is_novel = None
    if args.train:
        train = set(_read_table_smiles(args.train))
        from molvae.chem import canonical_smiles

        train = {canonical_smiles(s) for s in train}
        is_novel = lambda xs: [x not in train for x in xs]  # noqa: E731
    else:
        is_novel = _load(args).is_novel
    bars = []

    def bar(stage: str, total: int):
        if bars:
            bars[-1].close()  # the previous stage is done
        bars.append(_progress(total, stage))
        return bars[-1].update

    try:
        m, gen_rows, ref_rows = metrics.evaluate(gen, ref, is_novel, with_fcd=not args.no_fcd,
                                                 cache_dir=".molvae_cache", progress=bar)
    finally:
        for b in bars:
            b.close()
    out = Path(args.out or "evaluation.json")
    out.write_text(json.dumps(m, indent=2))
    plot = metrics.plot_distributions(gen_rows, ref_rows, out.with_suffix(".png"))
    print(pd.Series(m).to_string(float_format=lambda v: f"{v:.4f}"))
    print(f"-> {out}, {plot}", file=sys.stderr)


def _read_table_smiles(path: str) -> list[str]:
    from molvae.data import DataError, read_molecules

    for col in ("smiles", "SMILES"):
        try:
            return [s or "" for s in read_molecules(path, col).smiles]
        except DataError as exc:
            if "no column" not in str(exc):
                raise
    raise UserError(f"{path}: no 'smiles' or 'SMILES' column")


def cmd_optimize(args) -> None:
    import json

    from molvae.config import load_config
    from molvae.data import read_molecules
    from molvae.optimize import optimize

    overrides = list(args.set or [])
    for key in ("method", "objective", "oracle_budget", "similarity_threshold"):
        v = getattr(args, key)
        if v is not None:
            overrides.append(f"optimize.{key}={json.dumps(v)}")
    if args.seed_smiles:
        overrides.append(f"optimize.seeds={json.dumps(args.seed_smiles)}")
    cfg = load_config(args.config, overrides)
    _check_out(args.out)
    from molvae.optimize import Objective

    Objective.from_config(cfg.optimize, cfg.score.desirability)  # fail before any work
    lm = _load(args)
    known = (read_molecules(cfg.data.path, cfg.data.smiles_column,
                            limit=cfg.optimize.surrogate_size).smiles
             if cfg.optimize.method == "gradient" else [])
    bar = _progress(cfg.optimize.oracle_budget, f"optimize ({cfg.optimize.method})", "call")
    res = optimize(lm, cfg.optimize, cfg.score.desirability, [s for s in known if s],
                   progress=lambda done, total: bar.update(done - bar.n))
    bar.close()
    path = _write(res.candidates, args.out, "optimized.csv")
    top = res.candidates.head(cfg.optimize.top_k)
    for _, r in top.iterrows():
        print(f"{r.score:.4f}\t{r.smiles}")
    print(f"{len(res.candidates)} candidates, {res.oracle_calls} oracle calls, "
          f"{res.seconds:.1f} s -> {path}", file=sys.stderr)


# --------------------------------------------------------------------------- flows


def cmd_run(args) -> None:
    cfg = _load_run_config(args)
    if args.model:
        cfg.model_path = Path(args.model)
    if args.runner:
        cfg.runner = args.runner
    if args.address:
        cfg.runner, cfg.dask_address = "dask", args.address
    os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING" if not args.verbose else "INFO")
    from flows.pipeline import run_flow

    t0 = __import__("time").perf_counter()
    res = run_flow(args.flow, cfg)
    _print_summary(res, __import__("time").perf_counter() - t0)


def cmd_log(args) -> None:
    from flows.pipeline import log_run_dir

    run_id = log_run_dir(args.run_dir, _load_run_config(args))
    print(f"logged {args.run_dir} as MLflow run {run_id}")


def _print_summary(res: dict, seconds: float) -> None:
    import pandas as pd

    out = Path(res["out_dir"])
    print(f"\nmolvae run finished in {seconds:.0f} s -> {out}")
    for key in ("scored_candidates", "validity", "uniqueness@10k", "novelty", "intdiv1", "fcd",
                "filters", "opt_best_score", "baseline_best_score", "opt_oracle_calls"):
        if key in res and res[key] is not None:
            v = res[key]
            print(f"  {key:20s} {v:.4f}" if isinstance(v, float) else f"  {key:20s} {v}")
    top = out / "top_candidates.csv"
    if top.is_file():
        df = pd.read_csv(top).head(5)
        print("  best candidates (score, QED, SA, SMILES):")
        for _, r in df.iterrows():
            print(f"    {r.score:.3f}  {r.qed:.3f}  {r.sa:.2f}  {r.smiles}")
    print(f"  report: {out / 'report.html'}")
    if res.get("tracking_uri"):
        from molvae.tracking import open_run_commands

        print(f"  MLflow run {res['run_id']} (model version {res.get('registered_version')})")
        print(f"  open MLflow UI:  {open_run_commands(res['tracking_uri'])}")
    print("  open Prefect UI: prefect server start   (then http://127.0.0.1:4200; "
          "set PREFECT_API_URL=http://127.0.0.1:4200/api before `molvae run` to keep runs)")


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
    t.add_argument("--init-from", help="fine-tune: start from this checkpoint's weights with a "
                   "fresh optimizer, schedule and config (same vocabulary and model shape)")
    t.set_defaults(func=cmd_train)

    m = "checkpoint (default: the shipped MOSES model)"
    r = sub.add_parser("run", help="run a Prefect flow (default: the whole pipeline)")
    _config_args(r)
    r.add_argument("--flow", default="pipeline", choices=["pipeline", "generate", "optimize", "train"])
    r.add_argument("--model", help=m)
    r.add_argument("--runner", choices=["thread", "dask"], help="task runner")
    r.add_argument("--address", help="Dask scheduler address (implies --runner dask)")
    r.set_defaults(func=cmd_run)

    lg = sub.add_parser("log", help="log a finished run folder to MLflow (after an outage)")
    _config_args(lg)
    lg.add_argument("run_dir")
    lg.set_defaults(func=cmd_log)

    sm = sub.add_parser("sample", help="sample molecules from the prior")
    _config_args(sm)
    sm.add_argument("-n", type=int, default=1000)
    sm.add_argument("-o", "--out", help="CSV or Parquet (default samples.csv)")
    sm.add_argument("--model", help=m)
    sm.add_argument("--seed", type=int, default=0)
    sm.add_argument("--temperature", type=float, default=1.0)
    sm.add_argument("--greedy", action="store_true")
    sm.add_argument("--unique", action="store_true", help="keep going until N unique valid")
    sm.add_argument("--batch-size", type=int, default=1000)
    sm.add_argument("--max-length", type=int, default=100)
    sm.add_argument("--prior", choices=["auto", "normal", "posterior"], default="auto",
                    help="z from N(0, I), or from the training codes stored in the model "
                         "(posterior); auto = posterior when the model has them")
    sm.add_argument("--prior-width", type=float, default=None,
                    help="scale of the posterior spreads (default: the model's stored width)")
    sm.set_defaults(func=cmd_sample)

    pp = sub.add_parser("prior", help="store training codes in a model as its sampling prior")
    pp.add_argument("data", help="the model's training molecules (CSV/TSV/SMI, .gz)")
    pp.add_argument("-n", type=int, default=16384, help="codes to keep (default 16384)")
    pp.add_argument("--seed", type=int, default=0)
    pp.add_argument("--width", type=float, default=1.0,
                    help="scale of the posterior spreads sampling uses (default 1; wider: fewer "
                         "copies of training molecules)")
    pp.add_argument("--smiles-column", default="SMILES")
    pp.add_argument("--model", help=m + " (changed in place unless -o)")
    pp.add_argument("-o", "--out", help="write the model with codes here instead (.pt)")
    pp.set_defaults(func=cmd_prior)

    it = sub.add_parser("interpolate", help="decode the latent path through 2+ molecules")
    _config_args(it)
    it.add_argument("molecules", nargs="+", metavar="SMILES")
    it.add_argument("--steps", type=int, default=10)
    it.add_argument("--method", choices=["linear", "slerp"], default="linear")
    it.add_argument("-o", "--out")
    it.add_argument("--image", help="PNG strip of the path")
    it.add_argument("--model", help=m)
    it.set_defaults(func=cmd_interpolate)

    nb = sub.add_parser("neighbors", help="analogues around one molecule's latent code")
    _config_args(nb)
    nb.add_argument("smiles")
    nb.add_argument("--radii", type=float, nargs="+", default=[0.1, 0.25, 0.5])
    nb.add_argument("--per-radius", type=int, default=20)
    nb.add_argument("--seed", type=int, default=0)
    nb.add_argument("-o", "--out")
    nb.add_argument("--model", help=m)
    nb.set_defaults(func=cmd_neighbors)

    rc = sub.add_parser("reconstruct", help="encode and greedily decode molecules")
    rc.add_argument("file")
    rc.add_argument("-o", "--out")
    rc.add_argument("--smiles-column", default="SMILES")
    rc.add_argument("--model", help=m)
    rc.set_defaults(func=cmd_reconstruct)

    en = sub.add_parser("encode", help="latent means/variances and ELBO (OOD score) per molecule")
    en.add_argument("file")
    en.add_argument("-o", "--out", help=".parquet (default latent.parquet) or .npz")
    en.add_argument("--smiles-column", default="SMILES")
    en.add_argument("--model", help=m)
    en.set_defaults(func=cmd_encode)

    ev = sub.add_parser("evaluate", help="MOSES-style metrics of generated molecules")
    ev.add_argument("generated", help="file with a smiles/SMILES column")
    ev.add_argument("--reference", help="reference set (default: shipped MOSES test sample)")
    ev.add_argument("--train", help="training set for novelty (default: the model's)")
    ev.add_argument("--model", help=m)
    ev.add_argument("--no-fcd", action="store_true")
    ev.add_argument("-o", "--out", help="JSON (default evaluation.json); plots beside it")
    ev.set_defaults(func=cmd_evaluate)

    op = sub.add_parser("optimize", help="optimize a property in latent space")
    _config_args(op)
    op.add_argument("--method", choices=["gradient", "cmaes", "constrained", "random"])
    op.add_argument("--objective", help="property name or 'desirability'")
    op.add_argument("--oracle-budget", type=int, dest="oracle_budget")
    op.add_argument("--seed-smiles", nargs="+", help="seed molecules (constrained)")
    op.add_argument("--similarity-threshold", type=float, dest="similarity_threshold")
    op.add_argument("-o", "--out")
    op.add_argument("--model", help=m)
    op.set_defaults(func=cmd_optimize)
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
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    if not args.verbose:
        import warnings

        # MLflow's advice about type hints and input examples is not for our users.
        for advice in ("Add type hints", "An input example was not provided"):
            warnings.filterwarnings("ignore", message=f".*{advice}", category=UserWarning)
        warnings.filterwarnings("ignore", category=FutureWarning)
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
