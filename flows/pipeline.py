"""Prefect flows: train, generate, optimize, and the whole pipeline. Thin: parse, validate,
call molvae. Candidates are written to ``out_dir`` before anything is logged to MLflow.
"""

from __future__ import annotations

import time
from pathlib import Path

import pandas as pd
from prefect import flow, get_run_logger, task
from prefect.cache_policies import INPUTS, NO_CACHE, TASK_SOURCE

from molvae import candidates, conditions, generate, metrics, walks
from molvae.config import SHIPPED_MODEL, SHIPPED_TEST, RunConfig
from molvae.data import file_digest, prepare, read_molecules
from molvae.optimization import optimize
from molvae.parallel import default_workers
from molvae.train import train_model

from . import review, runs, server, shards
from .outputs import IO_RETRIES, write_outputs
from .preflight import preflight
from .progress import notice, stage

TOP_SET = 100  # candidates in top_candidates.csv, one per chemotype


# --------------------------------------------------------------------------- tasks


def _sized(verb: str, table: str) -> str:
    """A task run name with the size of its table argument: "score 5,000 molecules"."""
    from prefect.runtime import task_run

    df = task_run.parameters.get(table)
    return f"{verb} {len(df):,} molecules" if df is not None else verb


def _optimizer_name() -> str:
    from prefect.runtime import task_run

    p = task_run.parameters
    return ("baseline: prior sampling" if p.get("baseline")
            else f"optimize ({p.get('method', '?')})")


# Its cached result is stored as JSON, never a pickle: nothing in PREFECT_HOME can run code.
@task(cache_policy=INPUTS + TASK_SOURCE, persist_result=True, result_serializer="json",
      task_run_name="prepare data")
def prepare_data(data_cfg: dict, digest: str) -> dict:
    """Clean + encode (its own disk cache too); Prefect skips it when inputs are unchanged."""
    from molvae.config import DataConfig

    ds = prepare(DataConfig.model_validate(data_cfg))
    get_run_logger().info("data: kept %d of %d", len(ds), ds.report["rows"])
    return ds.report


@task(cache_policy=NO_CACHE, task_run_name="train the model")
def train(cfg: RunConfig, tracker_id: str | None) -> str:
    callbacks = [runs.tracker(cfg, tracker_id)] if tracker_id else []
    result = train_model(cfg.data, cfg.model, cfg.train, callbacks=callbacks)
    return str(result.best_checkpoint)


@task(**IO_RETRIES, task_run_name="load the model")
def load(path: str) -> str:
    shards.model(path)  # fails here, with retries, if the file is missing or corrupt
    return path


@task(cache_policy=NO_CACHE, task_run_name="sample {n} molecules (shard {part})")
def sample_shard(model_path: str, n: int, seed: int, gen: dict,
                 part: tuple[int, int] = (0, 1)) -> pd.DataFrame:
    """One shard, in this process, without worker processes (a flow's process runs other
    threads, and a process forked beside them can hang: see ``shards``); on Dask, shards
    run in parallel as tasks."""
    return shards.sample(model_path, n, seed, gen, part)


@task(cache_policy=NO_CACHE, task_run_name=lambda: _shards_name())
def sample_shards(model_path: str, jobs: list[tuple], workers: int) -> pd.DataFrame:
    """Every shard (n, seed, gen, part) in worker processes of their own (``shards``)."""
    return pd.concat(shards.sample_all(model_path, jobs, workers), ignore_index=True)


def _shards_name() -> str:
    from prefect.runtime import task_run

    jobs = task_run.parameters.get("jobs") or []
    return f"sample {sum(j[0] for j in jobs):,} molecules ({len(jobs)} shards)"


@task(cache_policy=NO_CACHE, task_run_name="interpolate and explore neighbours")
def walk(model_path: str, cfg: RunConfig) -> tuple[pd.DataFrame, pd.DataFrame]:
    loaded, g = shards.model(model_path), cfg.generate
    interp = (walks.interpolate(loaded, g.interpolate, g.interpolation_steps)
              if len(g.interpolate) >= 2 else pd.DataFrame())
    near = [walks.neighbors(loaded, s, g.neighbor_radii, g.neighbors_per_radius, g.seed)
            for s in g.neighbors]
    return interp, pd.concat(near, ignore_index=True) if near else pd.DataFrame()


@task(cache_policy=NO_CACHE, task_run_name="sample to the conditional requests")
def sample_conditional(model_path: str, cfg: RunConfig) -> pd.DataFrame:
    c = cfg.conditional  # in this process (see flows.shards)
    return generate.conditional(shards.model(model_path), c.targets, cfg.generate, c.num_samples,
                                workers=1)


@task(cache_policy=NO_CACHE, task_run_name="prepare the scoring panel")
def prepare_scoring(cfg: RunConfig) -> None:
    """The panel's tables built in this process while the shards sample, so the scoring
    workers forked next share them (each built its own: ~1.2 s)."""
    candidates.prepare_scoring(cfg.score)


@task(cache_policy=NO_CACHE, task_run_name=lambda: _sized("score", "df"))
def score_shard(model_path: str, df: pd.DataFrame, cfg: RunConfig, workers: int) -> pd.DataFrame:
    return candidates.annotate(df, cfg.score, shards.model(model_path), workers=workers)


@task(cache_policy=NO_CACHE, task_run_name=lambda: _sized("find nearest known molecules of", "df"))
def nearest_known(df: pd.DataFrame, cfg: RunConfig) -> pd.DataFrame:
    """Each valid row's nearest molecule in ``score.known_molecules`` (the training data)."""
    index = candidates.known_index(str(cfg.score.known_molecules), cfg.score.known_smiles_column,
                                   str(cfg.data.cache_dir))
    return candidates.add_nearest(df, index, workers=cfg.score.workers)


@task(cache_policy=NO_CACHE, task_run_name=lambda: _optimizer_name())
def run_optimizer(model_path: str, cfg: RunConfig, method: str, baseline: bool = False,
                  drawn: list[str] | None = None) -> dict:
    opt_cfg = cfg.optimize.model_copy(update={"method": method})
    known = (read_molecules(cfg.data.path, cfg.data.smiles_column, limit=opt_cfg.surrogate_size)
             .smiles if method == "gradient" else [])
    # A baseline is kept for its scores only (no full property panel on its molecules), and
    # it scores the run's own prior samples (``drawn``) before it samples more.
    res = optimize(shards.model(model_path), opt_cfg, cfg.score.desirability, [s for s in known if s],
                   annotate=not baseline, scorers=cfg.scorers, drawn=drawn or ())
    return {"candidates": res.candidates, "trajectory": res.trajectory,
            "calls": res.oracle_calls, "seconds": res.seconds, "starts": res.starts,
            "call_log": res.call_log(), "auc_top10": res.auc_top10, "unscorable": res.unscorable}


@task(cache_policy=NO_CACHE, task_run_name="MOSES metrics and FCD")
def evaluate_samples(model_path: str, df: pd.DataFrame, cfg: RunConfig, out_dir: Path) -> dict:
    """MOSES-style metrics against the shipped test sample, reusing the scored rows."""
    ref = read_molecules(SHIPPED_TEST).smiles
    rows = df.to_dict("records") if "pass_moses" in df and "heavy_atoms" in df else None
    m, gen_rows, ref_rows = metrics.evaluate(
        df["smiles"].tolist(), [s for s in ref if s], shards.model(model_path).novelty_test(),
        with_fragments=False, cache_dir=cfg.data.cache_dir, generated_rows=rows)
    train_ref = read_molecules(cfg.data.path, cfg.data.smiles_column, limit=2000).smiles
    # Cached by content (shipped for the default data). One process: other tasks' threads
    # are running, and a process forked beside them can hang (see flows.shards).
    train_rows = metrics.reference_rows([s for s in train_ref if s], cfg.data.cache_dir,
                                        workers=1, with_fragments=False)
    metrics.plot_distributions(gen_rows, train_rows, out_dir / "plots" / "properties.png",
                               labels=("generated", "training data"))
    return m


@task(**IO_RETRIES, task_run_name="log to MLflow")
def log_to_mlflow(cfg: RunConfig, run_id: str, out_dir: Path, summary: dict, model_path: str,
                  name: str = "pipeline") -> str | None:
    """Everything of a finished run folder, its dataset and its model (registered once per
    weights); returns the model version."""
    return review.log_folder(runs.tracker(cfg, run_id), cfg, out_dir, summary, name, model_path,
                             shards.model(model_path))


@flow(name="molvae-train", log_prints=True, persist_result=False)
def train_flow(cfg: RunConfig) -> dict:
    """data -> preprocess (cached) -> train -> evaluate -> log and register the model."""
    digest = file_digest(cfg.data.path)
    run_id, out_dir = runs.start(cfg, "train", digest)
    with runs.finishing(cfg, run_id) as state:
        stage(f"preparing the data ({cfg.data.path})")
        data_report = prepare_data(cfg.data.model_dump(mode="json"), digest)
        stage(f"training the model ({cfg.train.epochs} epochs at most) into {cfg.train.out_dir}")
        model_path = train(cfg, run_id)
        stage("sampling and evaluating the trained model")
        samples = sample_shard(model_path, min(cfg.generate.num_samples, 2000), cfg.generate.seed,
                               cfg.generate.model_dump())
        summary = {**evaluate_samples(model_path, samples, cfg, out_dir),
                   "data_kept": data_report["kept"], "model_path": model_path}
        write_outputs(out_dir, {"samples": samples}, cfg, summary)
        _log(cfg, state, out_dir, summary, model_path, "train")
    return {**summary, "out_dir": str(out_dir), **_tracking_result(cfg, state, run_id)}


def _generate(cfg: RunConfig, model_path: str, out_dir: Path) -> tuple[dict, dict]:
    g = cfg.generate
    sizes = [g.num_samples // cfg.shards + (i < g.num_samples % cfg.shards)
             for i in range(cfg.shards)]
    t0 = time.perf_counter()
    stage(_sampling_line(cfg))
    walks = walk.submit(model_path, cfg)
    # the scoring workers fork from this process (threads), Dask's are elsewhere
    panel = prepare_scoring.submit(cfg) if cfg.runner != "dask" else None
    jobs = [(n, g.seed + 1000 * i, g.model_dump(), (i, cfg.shards))  # no stored code shared
            for i, n in enumerate(sizes) if n]
    if cfg.runner == "dask":
        futures = [sample_shard.submit(model_path, *job) for job in jobs]
        samples = pd.concat([f.result() for f in futures], ignore_index=True)
    else:
        samples = sample_shards.submit(model_path, jobs, default_workers()).result()
    interp, near = walks.result()
    if panel is not None:
        panel.result()
    t1 = time.perf_counter()
    stage(f"scoring {len(samples):,} molecules")
    # Threads share one process: one scoring task with a process pool keeps both cores busy.
    # On Dask each shard is scored by its own worker.
    n_shards = cfg.shards if cfg.runner == "dask" else 1
    parts = [samples.iloc[i::n_shards] for i in range(n_shards)]
    workers = 1 if cfg.runner == "dask" else cfg.score.workers or default_workers()
    scored = [score_shard.submit(model_path, p, cfg, workers) for p in parts]
    cands = candidates.mark_unique(pd.concat([s.result() for s in scored]).sort_index(kind="stable"))
    t2 = time.perf_counter()
    metric_future = evaluate_samples.submit(model_path, cands, cfg, out_dir)
    walked = {"interpolation": interp, "neighbors": near}
    if len(interp) or len(near):
        stage(f"scoring the walks ({len(interp) + len(near):,} molecules), MOSES metrics beside")
    walked = {k: score_shard(model_path, df, cfg, 1) for k, df in walked.items() if len(df)}
    t3 = time.perf_counter()
    if cfg.score.known_molecules:
        stage(f"finding each molecule's nearest known molecule ({cfg.score.known_molecules})")
        cands = nearest_known(cands, cfg)
        walked = {k: nearest_known(df, cfg) for k, df in walked.items()}
    t4 = time.perf_counter()
    ranked = candidates.rank(cands)
    top = candidates.top_set(ranked, TOP_SET, cfg.score.top_max_similarity,
                             cfg.score.top_include_known)
    tables = {"candidates": candidates.with_ranks(cands, ranked, top), "top_candidates": top,
              **walked}
    if not metric_future.state.is_final():
        stage("MOSES metrics and FCD (finishing)")
    m = metric_future.result()
    m.update({f"pass_rate_{c[5:]}": float(cands.loc[cands.valid, c].mean())
              for c in cands.columns if c.startswith("pass_")})
    if "novel" in ranked:  # known where the model has its training-set hashes
        m.update(known_in_ranking=int((~ranked["novel"]).sum()),
                 top_known_skipped=top.attrs["known_skipped"])
    m.update(scored_candidates=len(cands), ranked_candidates=len(ranked),
             top_similar_skipped=top.attrs["similar_skipped"])
    m.update(seconds_sample=t1 - t0, seconds_score=t2 - t1,
             seconds_walks=t3 - t2, seconds_nearest=t4 - t3,
             seconds_evaluate=time.perf_counter() - t4)
    return tables, m


def _sampling_line(cfg: RunConfig) -> str:
    g, walks_ = cfg.generate, []
    if len(g.interpolate) >= 2:
        walks_.append("interpolating")
    if g.neighbors:
        walks_.append("exploring neighbours")
    return f"sampling {g.num_samples:,} molecules" + "".join(f", {w}" for w in walks_)


CONDITIONAL_TOP = 20  # conditional candidates per request in the review table


def _conditional(cfg: RunConfig, model_path: str) -> tuple[dict, dict]:
    """Samples for each conditional request, scored; per request the top set of its hits."""
    t0 = time.perf_counter()
    c = cfg.conditional
    stage(f"sampling {c.num_samples:,} molecules for each of {len(c.targets)} conditional requests")
    loaded = shards.model(model_path)
    for target in c.targets:  # a request few training molecules meet: say so, as the CLI does
        if note := conditions.support_note(loaded, generate.request(loaded, target)):
            get_run_logger().warning(note)
    df = sample_conditional(model_path, cfg)
    workers = cfg.score.workers or default_workers()
    asked = [k for t in c.targets for k in generate.request(loaded, t)]  # scored, whatever
    scored = cfg.model_copy(update={"score": candidates.with_requested(cfg.score, asked)})
    df = candidates.mark_unique(score_shard(model_path, df, scored, workers))
    space, targets = shards.model(model_path).conditions, cfg.conditional.targets
    df = conditions.mark_hits(df, space, targets)
    # per request, its best hits one per chemotype and (unless score.top_include_known) no
    # training molecules: the top set's rule, since a request near the training data's
    # centre draws many of them back
    best = [candidates.top_set(candidates.rank(part[part["hit"]]), CONDITIONAL_TOP,
                               cfg.score.top_max_similarity, cfg.score.top_include_known)
            for _, part in df.groupby("request_id", sort=True)]
    m = {"seconds_conditional": time.perf_counter() - t0}
    for i, row in enumerate(conditions.request_table(df, space, targets)):
        m.update({f"cond{i}_{k}": v for k, v in row.items() if isinstance(v, int | float)})
    return {"conditional": df, "conditional_candidates": pd.concat(best, ignore_index=True)}, m


def _optimize(cfg: RunConfig, model_path: str, drawn: list[str] | None = None
              ) -> tuple[dict, dict]:
    """The configured method and the prior-sampling baseline (``drawn``: the run's own prior
    samples, in sampling order, which the baseline scores first)."""
    method = cfg.optimize.method
    stage(f"optimizing ({method}, {cfg.optimize.oracle_budget:,} oracle calls at most)")
    # One after the other: each forks oracle workers, and a fork while another thread is
    # inside an OpenBLAS call (CMA-ES's eigendecomposition) left that call spinning forever.
    res = run_optimizer(model_path, cfg, method)
    if method != "random":
        stage("the baseline: prior sampling with the same budget")
    base = (run_optimizer(model_path, cfg, "random", baseline=True, drawn=drawn)
            if method != "random" else None)
    tables = {"optimization_candidates": res["candidates"], "trajectory": res["trajectory"],
              "oracle_calls": res["call_log"]}
    best = float(res["candidates"]["score"].max()) if len(res["candidates"]) else float("nan")
    m = {"opt_oracle_calls": res["calls"], "opt_best_score": best, "opt_seconds": res["seconds"],
         "opt_auc_top10": res["auc_top10"], "opt_unscorable": res["unscorable"]}
    if base is not None:
        tables["baseline_trajectory"] = base["trajectory"]
        tables["baseline_oracle_calls"] = base["call_log"]
        m["baseline_auc_top10"] = base["auc_top10"]
        m["baseline_best_score"] = (float(base["candidates"]["score"].max())
                                    if len(base["candidates"]) else float("nan"))
    if len(res["starts"]):
        tables["constrained_starts"] = res["starts"]
    return tables, m


def _run(cfg: RunConfig, name: str, do_generate: bool, do_optimize: bool) -> dict:
    log = get_run_logger()
    preflight(cfg, name)  # again, for flows called directly
    digest = file_digest(cfg.data.path) if Path(cfg.data.path).is_file() else ""
    run_id, out_dir = runs.start(cfg, name, digest)
    with runs.finishing(cfg, run_id) as state:
        if cfg.retrain:
            stage(f"preparing the data ({cfg.data.path})")
            prepare_data(cfg.data.model_dump(mode="json"), digest)
            stage(f"training the model ({cfg.train.epochs} epochs at most)")
            model_path = train(cfg, run_id)
        else:
            stage(f"loading the model {cfg.model_path or SHIPPED_MODEL}")
            model_path = load(str(cfg.model_path or SHIPPED_MODEL))
        tables, summary = {}, {"model": model_path}
        if cfg.conditional.targets and not do_generate:
            notice(f"the {name} flow samples no requests: its [conditional] section is left "
                   "unused (the generate and pipeline flows sample them)")
        if do_generate:
            t, m = _generate(cfg, model_path, out_dir)
            tables.update(t)
            summary.update(m)
        if do_generate and cfg.conditional.targets:
            t, m = _conditional(cfg, model_path)
            tables.update(t)
            summary.update(m)
        if do_optimize:
            drawn = tables["candidates"].sort_index() if "candidates" in tables else None
            drawn = None if drawn is None else drawn.loc[drawn.source == "prior", "smiles"].tolist()
            t, m = _optimize(cfg, model_path, drawn)
            tables.update(t)
            summary.update(m)
        stage(f"writing the run folder {out_dir}")
        write_outputs(out_dir, tables, cfg, summary)
        log.info("wrote %s", out_dir)
        review.publish(tables, summary, name)
        _log(cfg, state, out_dir, summary, model_path, name)
    return {**summary, "out_dir": str(out_dir), **_tracking_result(cfg, state, run_id)}


def _log(cfg: RunConfig, state: dict, out_dir: Path, summary: dict, model_path: str,
         name: str) -> None:
    """Log the finished run folder; if MLflow fails now, the run still succeeds (its
    results are on disk) and ``state`` forgets the MLflow run, marked failed if reachable,
    for `molvae log` to finish."""
    run_id = state["run_id"]
    if not run_id:
        return
    stage(f"logging to MLflow ({runs.uri(cfg)})")
    try:
        summary["registered_version"] = log_to_mlflow(cfg, run_id, out_dir, summary, model_path,
                                                      name)
    except Exception as exc:
        runs.end(cfg, run_id, failed=True)
        state["run_id"] = None
        get_run_logger().warning(
            "MLflow failed while logging (%s); results are safe in %s. Log them later with: "
            "molvae log %s", str(exc).splitlines()[0][:200], out_dir, out_dir)


def _tracking_result(cfg: RunConfig, state: dict, run_id: str | None) -> dict:
    logged = state["run_id"]
    out = {"run_id": logged, "tracking_uri": runs.uri(cfg) if logged else None}
    if run_id and not logged:
        out["not_logged"] = run_id
    return out


@flow(name="molvae-generate", log_prints=True, persist_result=False)
def generate_flow(cfg: RunConfig) -> dict:
    """model -> sample / interpolate / neighbors in shards -> decode -> score -> rank -> log."""
    return _run(cfg, "generate", True, False)


@flow(name="molvae-optimize", log_prints=True, persist_result=False)
def optimize_flow(cfg: RunConfig) -> dict:
    """model -> optimize (+ prior-sampling baseline) -> filter -> rank -> log."""
    return _run(cfg, "optimize", False, True)


@flow(name="molvae-pipeline", log_prints=True, persist_result=False)
def pipeline_flow(cfg: RunConfig) -> dict:
    """The whole run: reuse (or train) a model, generate, optimize, report."""
    return _run(cfg, "pipeline", True, True)


FLOWS = {"pipeline": pipeline_flow, "generate": generate_flow, "optimize": optimize_flow,
         "train": train_flow}


def run_flow(name: str, cfg: RunConfig) -> dict:
    """Run a flow with the configured task runner (threads, or Dask via prefect-dask)."""
    preflight(cfg, name)
    fl = FLOWS[name]
    if cfg.runner == "dask":
        from prefect_dask import DaskTaskRunner

        fl = fl.with_options(task_runner=DaskTaskRunner(**dask_options(cfg)))
    runs.prepare_tracking(cfg)  # beside the start of Prefect's temporary server
    with server.serving():  # the server `molvae run` started early, if it did
        return fl(cfg)


def dask_options(cfg: RunConfig) -> dict:
    """The DaskTaskRunner's arguments: the user's scheduler, or a local cluster that serves
    its scheduler and dashboard on this machine only (127.0.0.1)."""
    if cfg.dask_address:
        return {"address": cfg.dask_address}
    return {"cluster_kwargs": {"n_workers": 2, "threads_per_worker": 1, "processes": True,
                               "host": "127.0.0.1", "dashboard_address": "127.0.0.1:8787"}}
