"""`molvae run` and `molvae log`: the only commands that import ``flows`` (Prefect, MLflow),
lazily, inside the command, so that every other command starts without them."""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

from .common import UsageError, add_config_options, add_model_option, load_run_config

FLOWS = ("pipeline", "generate", "optimize", "train")
SUMMARY_KEYS = ("scored_candidates", "validity", "uniqueness@10k", "novelty", "intdiv1", "fcd",
                "filters", "opt_best_score", "baseline_best_score", "opt_oracle_calls",
                "opt_auc_top10", "baseline_auc_top10", "opt_unscorable")


def add_run_commands(sub: argparse._SubParsersAction) -> None:
    run_parser = sub.add_parser("run", help="run a Prefect flow (default: the whole pipeline)")
    add_config_options(run_parser)
    run_parser.add_argument("--flow", default="pipeline", choices=FLOWS)
    add_model_option(run_parser, " (model_path)")
    run_parser.add_argument("--runner", choices=["thread", "dask"], help="task runner (runner)")
    run_parser.add_argument("--address", help="Dask scheduler address (dask_address; implies "
                            "--runner dask)")
    run_parser.set_defaults(func=cmd_run)

    log_parser = sub.add_parser("log", help="log a finished run folder to MLflow (after an outage)")
    add_config_options(log_parser)
    log_parser.add_argument("run_dir")
    log_parser.add_argument("--force", action="store_true",
                            help="log it again although this store has it already")
    log_parser.set_defaults(func=cmd_log)


# A tracking server that is down costs a few seconds, not MLflow's default ~4 minutes of
# retries per request (the run's results are safe on disk either way). A value set wins.
MLFLOW_RETRIES = {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "2", "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",
                  "MLFLOW_HTTP_REQUEST_TIMEOUT": "30"}


def _short_mlflow_retries() -> None:
    for key, value in MLFLOW_RETRIES.items():
        os.environ.setdefault(key, value)


def cmd_run(args: argparse.Namespace) -> None:
    t0 = time.perf_counter()
    if args.address and args.runner == "thread":
        raise UsageError("--address is a Dask scheduler; it cannot go with --runner thread")
    cfg = load_run_config(args, {
        "model_path": args.model,
        "runner": "dask" if args.address else args.runner,
        "dask_address": args.address,
    })
    from molvae.candidates import check_score_config

    check_score_config(cfg.score)  # one line now, not a failed flow run later
    if cfg.model_path is not None and not cfg.retrain and not Path(cfg.model_path).is_file():
        from molvae.errors import CheckpointError

        raise CheckpointError(f"{cfg.model_path}: model file not found")
    if args.flow in ("pipeline", "optimize"):
        from molvae.optimization import Objective

        Objective.from_config(cfg.optimize, cfg.score.desirability, cfg.scorers)
    if cfg.dask_address:
        _check_scheduler(cfg.dask_address)
    if args.flow == "train" or cfg.retrain:
        from molvae.train import check_out_dir

        check_out_dir(cfg.train)
    _check_writable(Path(cfg.out_dir), "out_dir")
    _short_mlflow_retries()
    # INFO records (molvae's included) go to the Prefect API, so its UI shows each run's
    # log; the console shows warnings only, unless --verbose. A value the user set wins.
    os.environ.setdefault("PREFECT_LOGGING_LEVEL", "INFO")
    os.environ.setdefault("PREFECT_LOGGING_EXTRA_LOGGERS", "molvae")
    os.environ.setdefault("PREFECT_LOGGING_HANDLERS_CONSOLE_LEVEL",
                          "INFO" if args.verbose else "WARNING")
    from flows import server

    started = server.start()  # Prefect's temporary server boots beside the imports
    print(f"molvae run: the {args.flow} flow"
          + (" (Prefect's temporary server is starting)" if started else ""), file=sys.stderr)
    from flows.pipeline import run_flow
    from flows.progress import to_console

    with to_console(started=t0):  # one line a stage on stderr, timed from the command's start
        result = run_flow(args.flow, cfg)
    print_summary(result, time.perf_counter() - t0)


def _check_writable(folder: Path, what: str) -> None:
    """Before any work: ``folder`` can be created and written."""
    from molvae.files import make_writable_folder

    try:
        make_writable_folder(folder)
    except OSError as exc:
        raise UsageError(f"{what} {folder}: cannot write run folders there "
                         f"({exc.strerror or exc})") from None


def _check_scheduler(address: str) -> None:
    """Before any work: a Dask scheduler answers at ``address`` (scheme://host:port)."""
    import socket
    from urllib.parse import urlsplit

    try:
        parts = urlsplit(address if "://" in address else f"tcp://{address}")
        host, port = parts.hostname, parts.port
    except ValueError:
        host = port = None
    if not host or not port:
        raise UsageError(f"--address {address!r}: write the scheduler as tcp://HOST:PORT")
    try:
        socket.create_connection((host, port), timeout=10).close()
    except OSError as exc:
        raise UsageError(f"no Dask scheduler answers at {address} ({exc.strerror or exc}); start "
                         "one (`dask scheduler`), or leave --address out for a local cluster") from None


def cmd_log(args: argparse.Namespace) -> None:
    if not Path(args.run_dir).is_dir():
        raise UsageError(f"{args.run_dir}: no such folder (a run folder is under runs/)")
    if not (Path(args.run_dir) / "summary.json").is_file():
        raise UsageError(f"{args.run_dir}: not a molvae run folder (no summary.json)")
    cfg = load_run_config(args)
    _short_mlflow_retries()
    # -c / --set tracking.* choose the store; the folder's own config.json the rest
    tracking = {k: getattr(cfg.tracking, k) for k in cfg.tracking.model_fields_set}
    from flows.relog import log_run_dir

    run_id = log_run_dir(args.run_dir, cfg, tracking, force=args.force)
    print(f"logged {args.run_dir} as MLflow run {run_id}")


def print_summary(result: dict, seconds: float) -> None:
    out = Path(result["out_dir"])
    print(f"\nmolvae run finished in {seconds:.0f} s -> {out}")
    for key in SUMMARY_KEYS:
        value = result.get(key)
        if value is not None:
            print(f"  {key:20s} {value:.4f}" if isinstance(value, float) else f"  {key:20s} {value}")
    if result.get("model_path"):
        print(f"  model: {result['model_path']}")
    _print_requests(result)
    _print_top(out / "top_candidates.csv")
    if (out / "report.html").is_file():
        print(f"  report: {out / 'report.html'}")
    if not result.get("run_id"):
        print(f"  not logged to MLflow (unreachable or disabled); log it later: molvae log {out}")
    if result.get("tracking_uri"):
        from molvae.tracking import open_run_commands, run_url

        uri = result["tracking_uri"]
        print(f"  MLflow run {result['run_id']} (model version {result.get('registered_version')})")
        if not uri.startswith("http"):
            print(f"  open MLflow UI:  {open_run_commands(uri)}")
        print(f"  the run's page:  {run_url(uri, result['run_id'])}")
    print("  open Prefect UI: prefect server start   (then http://127.0.0.1:4200; "
          "set PREFECT_API_URL=http://127.0.0.1:4200/api before `molvae run` to keep runs)")


def _print_requests(result: dict) -> None:
    """Per conditional request (the run's ``cond<i>_*`` metrics): hits, novel hits, MAEs."""
    i = 0
    while f"cond{i}_hit" in result:
        maes = " ".join(f"{k.split('_mae_')[1]} {v:.3g}" for k, v in result.items()
                        if k.startswith(f"cond{i}_mae_"))
        novel = result.get(f"cond{i}_novel_hit")  # none where novelty is unknown
        novel = "unknown" if novel is None else f"{novel:.1%}"
        print(f"  request {i}: hit {result[f'cond{i}_hit']:.1%}, novel hits {novel}"
              + (f", MAE {maes}" if maes else ""))
        i += 1


def _print_top(path: Path) -> None:
    if not path.is_file():
        return
    import pandas as pd

    print("  top set (rank, score, QED, SA, nearest known similarity, SMILES):")
    for _, r in pd.read_csv(path).head(5).iterrows():
        near = r.get("nearest_similarity", float("nan"))
        print(f"    #{int(r['rank']):<4d} {r.score:.3f}  {r.qed:.3f}  {r.sa:.2f}  {near:.2f}  "
              f"{r.smiles}")
