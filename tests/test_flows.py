"""Flows end to end under one Prefect test harness, MLflow on a temporary SQLite store,
and everything read back through MlflowClient."""

import contextlib
import json
import os
import re
from pathlib import Path

import pandas as pd
import pytest

# Spread over make test's two workers like the rest: each worker starts its own Prefect test
# server at its first flow test (~12 s). (xdist's --dist loadgroup, which kept them on one
# worker, does nothing under pytest 9: it renames node ids that pytest 9 no longer reads.)
pytestmark = pytest.mark.slow


@pytest.fixture(scope="session")
def harness(tmp_path_factory):
    """Flows run against the Prefect server the test session started (conftest: one for
    every test process, as `molvae run` runs against its own), else Prefect's test harness."""
    home = tmp_path_factory.mktemp("prefect_home")
    os.environ["PREFECT_HOME"] = str(home)  # isolate cached results
    from conftest import TEST_PREFECT_API

    url = os.environ.get(TEST_PREFECT_API)
    if url:
        from prefect.settings import PREFECT_API_URL, temporary_settings

        _wait_for(url)
        with temporary_settings(updates={PREFECT_API_URL: url}):
            yield
        return
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=120):
        yield


def _wait_for(url: str, timeout: float = 120) -> None:
    import time
    import urllib.request

    deadline = time.time() + timeout
    while True:
        try:
            with urllib.request.urlopen(f"{url}/health", timeout=5) as r:
                if r.status == 200:
                    return
        except OSError:
            if time.time() > deadline:
                raise
        time.sleep(0.2)


@pytest.fixture(scope="session")
def store(tmp_path_factory):
    return f"sqlite:///{tmp_path_factory.mktemp('mlflow') / 'mlflow.db'}"


@pytest.fixture(scope="session")
def cache(tmp_path_factory):
    """One data/metrics cache for the session: the reference set's scores and FCD
    statistics are computed once, not once per flow."""
    return tmp_path_factory.mktemp("cache")


def _known(tmp_path) -> Path:
    """2,000 training molecules as the known set: the nearest-molecule search as in a real
    run, without fingerprinting the 100k sample in every test process."""
    path = tmp_path / "known.csv"
    if not path.is_file():
        pd.read_csv("data/moses_train_100k.csv.gz", nrows=2000).to_csv(path, index=False)
    return path


def _cfg(tmp_path, model, store, cache=None, **extra):
    from molvae.config import load_config

    overrides = [f'model_path="{model}"', f'out_dir="{tmp_path / "runs"}"',
                 f'score.known_molecules="{_known(tmp_path)}"',
                 "generate.num_samples=120", "generate.batch_size=64", "shards=2",
                 "generate.interpolation_steps=4", "generate.neighbors_per_radius=3",
                 "optimize.oracle_budget=60", "optimize.num_starts=8",
                 f'tracking.tracking_uri="{store}"', "tracking.top_images=6",
                 f'data.cache_dir="{cache or tmp_path / "cache"}"',
                 *[f"{k}={json.dumps(v)}" for k, v in extra.items()]]
    return load_config(overrides=overrides)


@pytest.mark.slow
def test_pipeline_is_reviewable_in_mlflow(harness, store, cache, tiny_trained, tmp_path):
    import io

    import mlflow
    from mlflow.tracking import MlflowClient

    from flows.pipeline import run_flow
    from flows.progress import to_console
    from molvae.data import file_digest
    from molvae.tracking import MlflowTracker

    cfg = _cfg(tmp_path, tiny_trained[1].checkpoint, store, cache)
    console = io.StringIO()
    with to_console(console):  # as `molvae run` shows the run: one line a stage
        res = run_flow("pipeline", cfg)
    out = Path(res["out_dir"])
    lines = console.getvalue().splitlines()
    stages = ["run pipeline-", "loading the model", "sampling 120 molecules, interpolating, "
              "exploring neighbours", "scoring 120 molecules", "scoring the walks",
              "finding each molecule's nearest known molecule", "optimizing (cmaes, 60 oracle",
              "the baseline", f"writing the run folder {out}", "logging to MLflow"]
    seen = [next((i for i, line in enumerate(lines) if s in line), None) for s in stages]
    assert None not in seen and seen == sorted(seen), lines  # each stage, in order
    assert all(re.match(r"\[ *\d+\.\d s\] ", line) for line in lines), lines
    cands = pd.read_csv(out / "candidates.csv")
    assert len(cands) == 120 and cands.unique.sum() > 0
    client = MlflowClient(store)
    run = client.get_run(res["run_id"])
    assert run.info.status == "FINISHED"
    assert run.data.params["generate.num_samples"] == "120"
    assert run.data.params["optimize.method"] == "cmaes"
    m = run.data.metrics
    for key in ("validity", "uniqueness_at_1k", "novelty", "intdiv1", "fcd", "filters",
                "pass_rate_pains", "opt_best_score", "baseline_best_score"):
        assert key in m, key
    assert m["scored_candidates"] == 120
    assert run.data.tags["data_digest"] and run.data.tags["code_version"]
    assert run.inputs.dataset_inputs[0].dataset.name == "moses_train_100k.csv.gz"
    arts = {a.path for a in client.list_artifacts(res["run_id"])}
    assert {"candidates.csv", "report.html", "summary.json", "images", "plots",
            "tables"} <= arts
    imgs = {a.path for a in client.list_artifacts(res["run_id"], "images")}
    assert {"images/top_candidates.png", "images/interpolation.png"} <= imgs
    plots = {a.path for a in client.list_artifacts(res["run_id"], "plots")}
    assert {"plots/properties.png", "plots/trajectory.png"} <= plots
    mlflow.set_tracking_uri(store)  # load_table searches the process-wide store
    table = client.load_table(experiment_id=run.info.experiment_id,
                              artifact_file="tables/candidates.json", run_ids=[res["run_id"]])
    assert len(table) == 120 and "qed" in table.columns
    html = (out / "report.html").read_text()
    assert "<svg" in html and "sortBy" in html
    # only the params the run used, and the model's own record
    assert "train.epochs" not in run.data.params and "data.path" not in run.data.params
    assert run.data.params["model.latent_size"] == "8"
    assert run.data.params["model_train.epochs"] == "3"
    assert run.data.tags["model_sha256"] == file_digest(cfg.model_path)
    note = run.data.tags["mlflow.note.content"]
    assert "top set" in note and "nearest_similarity" in note and "FCD" in note
    # keyed images (compare view) and the optimization curves as stepped metrics
    keyed = [a.path for a in client.list_artifacts(res["run_id"], "images")
             if "+step+" in a.path]
    assert any(p.startswith("images/top_candidates+step+0") for p in keyed), keyed
    curve = client.get_metric_history(res["run_id"], "opt_best_score_by_calls")
    assert len(curve) > 1 and [c.step for c in curve] == sorted(c.step for c in curve)
    assert client.get_metric_history(res["run_id"], "baseline_best_score_by_calls")
    # the baseline scored the run's own prior samples, in sampling order, not new ones
    base = pd.read_csv(out / "baseline_oracle_calls.csv").smiles.tolist()
    firsts = list(dict.fromkeys(s for s in cands.sort_values(["seed", "step"]).smiles if isinstance(s, str)))
    assert base == firsts[: len(base)], (base, firsts)
    # the table in rank order, what a reviewer reads first in front
    assert list(table.columns[:4]) == ["rank", "smiles", "score", "novel"]
    top = pd.read_csv(out / "top_candidates.csv")
    assert top["rank"].is_monotonic_increasing and top.novel.all()
    assert {"nearest_known", "nearest_similarity", "reasons"} <= set(top.columns)
    # the Prefect flow run carries the MLflow run's name and id, and its log says so
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import LogFilter, LogFilterFlowRunId

    with get_client(sync_client=True) as prefect:
        flow_run = prefect.read_flow_run(run.data.tags["prefect_flow_run_id"])
        logs = prefect.read_logs(LogFilter(flow_run_id=LogFilterFlowRunId(any_=[flow_run.id])))
    assert flow_run.name == out.name == run.info.run_name
    assert f"mlflow_run_id:{res['run_id']}" in flow_run.tags
    assert any(res["run_id"] in log.message for log in logs)
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

    with get_client(sync_client=True) as prefect:
        tasks = prefect.read_task_runs(flow_run_filter=FlowRunFilter(
            id=FlowRunFilterId(any_=[flow_run.id])))
    names = {t.name for t in tasks}
    assert {"MOSES metrics and FCD", "score 120 molecules", "optimize (cmaes)",
            "baseline: prior sampling", "log to MLflow"} <= names, names
    # a model version per weights: the same file again reuses the version and says so
    version = client.get_model_version("molvae", res["registered_version"])
    assert version.tags["model_sha256"] == file_digest(cfg.model_path)
    from molvae.checkpoint import load_model

    hashes = load_model(cfg.model_path).train_hashes
    assert f"trained on {len(hashes):,} distinct molecules" in version.description
    assert client.get_model_version_by_alias("molvae", "latest-run").version == version.version
    again = MlflowTracker(cfg.tracking, run_name="again")
    assert again.log_model(cfg.model_path, "molvae", description="another run's words",
                           tags={"model_file": "elsewhere.pt"}) == res["registered_version"]
    assert client.get_run(again.run_id).data.tags["registered_model_reused"] == "true"
    kept = client.get_model_version("molvae", res["registered_version"])  # as registered
    assert kept.description == version.description and kept.tags == version.tags
    mlflow.set_tracking_uri(store)
    model = mlflow.pyfunc.load_model(f"models:/molvae/{res['registered_version']}")
    got = model.predict(pd.DataFrame(), params={"mode": "sample", "n": 4})  # no input needed
    assert len(got) == 4 and got.valid.all()
    got = model.predict(pd.DataFrame({"smiles": ["CCO"]}), params={"mode": "reconstruct"})
    assert list(got.input) == ["CCO"]
    with pytest.raises(Exception, match="reads the molecules from a 'smiles' column"):
        model.predict(pd.DataFrame(), params={"mode": "encode"})


@pytest.mark.slow
def test_conditional_section_of_the_generate_flow(harness, store, cache, steered, tiny, tmp_path):
    from mlflow.tracking import MlflowClient

    from flows.pipeline import run_flow
    from molvae.config import ConditionalConfig, load_config
    from molvae.errors import GenerationError

    targets = [{"logp": [2.0, 3.0], "qed": 0.8}, {"logp": 1.0}]
    cfg = _cfg(tmp_path, steered.path, store, cache, shards=1)  # a model with a steering head
    cfg = cfg.model_copy(update={"conditional": ConditionalConfig(targets=targets, num_samples=40),
                                 "score": cfg.score.model_copy(update={"properties": ["qed"]})})
    res = run_flow("generate", cfg)  # logP scored for the requests though score lists QED
    out = Path(res["out_dir"])
    cond = pd.read_csv(out / "conditional.csv", keep_default_na=False)
    assert len(cond) == 80 and set(cond.request) == {"logp=2:3 qed=0.8", "logp=1"}
    assert cond.loc[cond.request_id == 0, "target_logp"].between(2, 3).all()
    best = pd.read_csv(out / "conditional_candidates.csv")
    assert best.hit.all() and best.groupby("request").size().max() <= 20
    assert best.novel.all() and best.smiles.is_unique  # the top set's rule per request
    from molvae import chem

    for _, part in best.groupby("request"):
        sims = [chem.bulk_tanimoto(a, part.smiles.tolist()[i + 1:])
                for i, a in enumerate(part.smiles)]
        assert max((max(s) for s in sims if len(s)), default=0) <= 0.55
    assert 0 <= res["cond0_hit"] <= 1 and "cond1_mae_logp" in res
    assert 0 <= res["cond0_novel_hit"] <= res["cond0_hit"] and 0 <= res["cond0_novel"] <= 1
    run = MlflowClient(store).get_run(res["run_id"])
    assert run.data.params["conditional.num_samples"] == "40"
    assert run.data.params["model.steering"] == "['logp', 'qed']"  # its requests steered
    assert "cond0_hit" in run.data.metrics
    plots = {a.path for a in MlflowClient(store).list_artifacts(res["run_id"], "plots")}
    assert "plots/conditional.png" in plots
    # the registered model samples to a request for a reviewer too (pyfunc, MLflow's loader)
    import mlflow

    mlflow.set_tracking_uri(store)
    model = mlflow.pyfunc.load_model(f"models:/molvae/{res['registered_version']}")
    got = model.predict(pd.DataFrame({"smiles": ["CCO"]}),
                        params={"mode": "sample", "n": 6, "condition": "logp=1:2"})
    assert len(got) == 6 and got.target_logp.between(1, 2).all()
    # a request an unconditional model cannot take fails before any run folder exists
    bad = load_config(overrides=[f'model_path="{tiny.path}"', f'out_dir="{tmp_path / "bad"}"',
                                 f'tracking.tracking_uri="{store}"',
                                 'conditional.targets=[{logp = 2.0}]'])
    with pytest.raises(GenerationError, match="not a conditional model"):
        run_flow("generate", bad)
    # so does a prior width with z ~ N(0, I), which would change nothing
    wide = load_config(overrides=[f'model_path="{tiny.path}"', f'out_dir="{tmp_path / "bad"}"',
                                  f'tracking.tracking_uri="{store}"', 'generate.prior="normal"',
                                  "generate.prior_width=2.0"])
    with pytest.raises(GenerationError, match="would change nothing"):
        run_flow("pipeline", wide)
    assert not (tmp_path / "bad").exists()


def test_preflight_refuses_what_would_fail_or_empty_a_run_later(cvae, tmp_path):
    """Each of these failed minutes into a run (a traceback, a run folder and a failed MLflow
    run left behind) or made every molecule fail a filter; preflight refuses them first."""
    from flows.preflight import preflight
    from molvae.config import load_config
    from molvae.errors import CheckpointError, ConfigError, GenerationError

    base = [f'model_path="{cvae.path}"', f'out_dir="{tmp_path / "runs"}"']
    for extra, error, match in [
            (["generate.condition={logp = 99}"], GenerationError, "outside what the training"),
            (['generate.neighbors=["xyz"]'], ConfigError, "generate.neighbors: 'xyz' is not a"),
            (['generate.interpolate=["CCO", "xyz"]'], ConfigError, "generate.interpolate: 'xyz'"),
            (['optimize.method="constrained"'], ConfigError, "give them \\(optimize.seeds\\)"),
            (['optimize.seeds=["xyz"]'], ConfigError, "optimize.seeds: 'xyz' is not a valid"),
            (["score.windows={mw = [600, 150]}"], ConfigError, "mw = \\[600, 150\\] has low > high"),
            (['score.filters=["reference"]'], ConfigError, "score.reference_smiles"),
            (['score.reference_smiles=["xyz"]'], ConfigError, "reference_smiles: 'xyz' is not"),
            ([f'tracking.tracking_uri="{tmp_path / "mlruns"}"'], ConfigError, "is a folder"),
            (['score.known_smiles_column="smi"'], ConfigError, "has no column 'smi' \\(columns: SMILES"),
            (['tracking.tracking_uri="file:///tmp/mlruns"'], ConfigError, "sqlite:///FILE.db"),
            (["conditional.targets=[{logp = 1}]", "generate.condition_steer=5"], GenerationError,
             "has no steering head"),
            (["retrain=true", "conditional.targets=[{logp = 1}]", "generate.condition_steer=5"],
             ConfigError, "a model this run trains has no steering head")]:
        with pytest.raises(error, match=match):
            preflight(load_config(overrides=[*base, *extra]), "pipeline")
    junk = tmp_path / "model.pt"
    junk.write_text("SMILES\nCCO\n")  # a CSV named as a model
    with pytest.raises(CheckpointError, match="not a readable molvae checkpoint"):
        preflight(load_config(overrides=[f'model_path="{junk}"']), "generate")
    preflight(load_config(overrides=[*base, "generate.condition={LogP = 2}",
                                     'tracking.tracking_uri="databricks"']), "pipeline")
    assert not (tmp_path / "runs").exists()


def test_a_local_dask_cluster_listens_on_this_machine_only(tmp_path):
    """The cluster `molvae run --runner dask` starts, started here with the same options
    (no workers: the addresses are the scheduler's), checked on its bound sockets."""
    from distributed import LocalCluster

    from flows.pipeline import dask_options
    from molvae.config import load_config

    opts = dask_options(load_config(overrides=['runner="dask"']))["cluster_kwargs"]
    opts = {**opts, "n_workers": 0, "dashboard_address": "127.0.0.1:0"}  # a free port
    with LocalCluster(**opts) as cluster:
        assert cluster.scheduler_address.startswith("tcp://127.0.0.1:")
        assert "127.0.0.1" in cluster.dashboard_link
    assert dask_options(load_config(overrides=['dask_address="tcp://h:8786"'])) == {
        "address": "tcp://h:8786"}


@pytest.mark.slow
def test_generate_on_dask(harness, store, cache, tiny_trained, tmp_path):
    """Against a running cluster by its address over TCP (how a team points molvae at
    theirs; tasks and results serialized both ways): its worker in this interpreter, to spare
    a worker process's imports (worker interpreters are covered by the shards' test)."""
    from distributed import LocalCluster

    from flows.pipeline import run_flow

    with LocalCluster(n_workers=1, threads_per_worker=2, processes=False, protocol="tcp://",
                      dashboard_address=None) as cluster:
        assert cluster.scheduler_address.startswith("tcp://")
        cfg = _cfg(tmp_path, tiny_trained[1].checkpoint, store, cache, runner="dask",
                   dask_address=cluster.scheduler_address)
        res = run_flow("generate", cfg)
    cands = pd.read_csv(Path(res["out_dir"]) / "candidates.csv", keep_default_na=False)
    assert len(cands) == 120 and "qed" in cands
    # the Dask worker sampled the shards; the same shards sampled here: the same molecules
    from flows.shards import sample as _sample

    gen = cfg.generate.model_dump()
    local = [_sample(str(cfg.model_path), 60, cfg.generate.seed + 1000 * i, gen, (i, 2))
             for i in range(2)]
    generated = cands.sort_values(["seed", "step"], kind="stable")  # the file is in rank order
    assert generated.smiles.tolist() == pd.concat(local).smiles.tolist()
    assert res["seconds_sample"] > 0 and res["seconds_score"] > 0


@pytest.mark.slow
def test_mlflow_outage_loses_nothing_and_a_rerun_logs(harness, store, tiny_trained, tmp_path):
    from mlflow.tracking import MlflowClient

    from flows.pipeline import run_flow
    from flows.relog import log_run_dir

    cfg = _cfg(tmp_path, tiny_trained[1].checkpoint, "http://127.0.0.1:9")
    cfg.tracking.tracking_uri = "http://127.0.0.1:9"  # nothing listens on the discard port
    os.environ["MLFLOW_HTTP_REQUEST_MAX_RETRIES"] = "0"
    try:
        res = run_flow("optimize", cfg)
    finally:
        del os.environ["MLFLOW_HTTP_REQUEST_MAX_RETRIES"]
    out = Path(res["out_dir"])
    assert res["run_id"] is None and (out / "optimization_candidates.csv").is_file()
    cfg.tracking.tracking_uri = store
    (out / "config.json").write_text(cfg.model_dump_json())
    (out / "elsewhere.csv").symlink_to(tmp_path / "known.csv")  # never uploaded
    out = out.rename(out.with_name("copied-elsewhere"))  # a renamed folder: its record says
    made = json.loads((out / ".run.json").read_text())
    run_id = log_run_dir(out, cfg)
    client = MlflowClient(store)
    arts = {a.path for a in client.list_artifacts(run_id)}
    assert "optimization_candidates.csv" in arts and "elsewhere.csv" not in arts
    run = client.get_run(run_id)
    assert run.info.status == "FINISHED" and "mlflow.note.content" in run.data.tags
    assert run.inputs.dataset_inputs and run.data.tags["registered_model"].startswith("molvae/")
    assert run.data.tags["flow"] == "optimize" == made["flow"]  # not the folder's name
    assert run.data.tags["code_version"] == made["code_version"]  # the code that made it
    assert client.get_metric_history(run_id, "opt_best_score_by_calls")
    # logging the same folder again is refused, unless forced; a bad record makes no run
    from molvae.errors import OutputError

    with pytest.raises(OutputError, match="already logged as MLflow run"):
        log_run_dir(out, cfg)
    assert log_run_dir(out, cfg, force=True) != run_id
    before = len(client.search_runs([run.info.experiment_id]))
    (out / "summary.json").write_text("{not json")
    with pytest.raises(OutputError, match="unreadable run record"):
        log_run_dir(out, cfg, force=True)
    (out / "summary.json").write_text("{}")
    pd.DataFrame({"smiles": ["CCO"]}).to_csv(out / "top_candidates.csv", index=False)
    with pytest.raises(OutputError, match="top_candidates.csv has no score column"):
        log_run_dir(out, cfg, force=True)  # it was a KeyError after the run was made
    (out / "top_candidates.csv").unlink()
    assert len(client.search_runs([run.info.experiment_id])) == before
    # the CLI's --set tracking.* sends the folder to another store
    from molvae.cli import main

    (out / "summary.json").write_text("{}")
    other = f"sqlite:///{tmp_path / 'other.db'}"
    assert main(["log", str(out), "--set", f'tracking.tracking_uri="{other}"']) == 0
    assert len(MlflowClient(other).search_runs(
        [MlflowClient(other).get_experiment_by_name("molvae").experiment_id])) == 1


def test_preprocessing_task_is_cached_across_runs(harness, tmp_path):
    from prefect import flow

    from flows.pipeline import prepare_data
    from molvae.config import DataConfig
    from molvae.data import file_digest
    from tests.conftest import SHIPPED_TRAIN

    data = DataConfig(path=SHIPPED_TRAIN, limit=300, cache_dir=tmp_path / "c").model_dump(mode="json")

    @flow
    def twice():
        a = prepare_data(data, file_digest(SHIPPED_TRAIN), return_state=True)
        b = prepare_data(data, file_digest(SHIPPED_TRAIN), return_state=True)
        return a, b

    a, b = twice()
    assert a.result()["kept"] == 300 and b.name == "Cached"
    # the stored result is JSON, not a pickle: a file planted there cannot run code
    stored = [p for p in (Path(os.environ["PREFECT_HOME"]) / "storage").rglob("*") if p.is_file()]
    assert stored
    for p in stored:
        record = json.loads(p.read_text())
        assert record["metadata"]["serializer"]["type"] == "json", record["metadata"]


def test_train_flow_logs_epochs_and_registers(harness, store, cache, tmp_path):
    from mlflow.tracking import MlflowClient

    from flows.pipeline import run_flow
    from tests.conftest import TINY_MODEL

    cfg = _cfg(tmp_path, "", store, cache, retrain=True)
    cfg.data.limit = 400
    cfg.train.epochs = 2
    cfg.train.batch_size = 64
    cfg.train.out_dir = tmp_path / "train"
    cfg.train.recon_eval_size = 10
    for k, v in TINY_MODEL.items():
        setattr(cfg.model, k, v)
    res = run_flow("train", cfg)
    client = MlflowClient(store)
    hist = client.get_metric_history(res["run_id"], "val_loss")
    assert [h.step for h in hist] == [1, 2]
    assert "active_units" in client.get_run(res["run_id"]).data.metrics
    assert res["registered_version"] is not None


USER_OBJECTIVE = """
def score(smiles):
    # a team's own scoring code: nitrogen count and size; it cannot score bromides
    return [float("nan") if "Br" in s else s.count("N") + 0.02 * len(s) for s in smiles]
"""


def test_user_objectives_end_to_end(harness, store, tiny_trained, chemprop_model, tmp_path):
    """A chemprop model and a user's callable from a file, as terms of an mpo objective:
    candidates, every oracle call, the AUC and the top-10 curves reviewable in MLflow.
    (`optimize.objective=file.py:function` alone: test_tracking_server_dying_mid_run.)"""
    import io

    from mlflow.tracking import MlflowClient

    from flows.pipeline import run_flow
    from flows.progress import to_console
    from molvae.config import ConditionalConfig, DesirabilityTerm, ScorerConfig

    user = tmp_path / "team_score.py"
    user.write_text(USER_OBJECTIVE)
    cfg = _cfg(tmp_path, tiny_trained[1].checkpoint, store, **{"optimize.objective": "goal"})
    cfg.conditional = ConditionalConfig(targets=[{"logp": 2.0}])  # which this flow does not sample
    cfg.scorers = {"logp_model": ScorerConfig(kind="chemprop", target=str(chemprop_model)),
                   "goal": ScorerConfig(kind="mpo", terms=[
                       DesirabilityTerm(property="logp_model", kind="window", low=1, high=3),
                       DesirabilityTerm(property=f"{user}:score", kind="maximize",
                                        low=0, high=3)])}
    console = io.StringIO()
    with to_console(console):
        res = run_flow("optimize", cfg)
    # a [conditional] section the optimize flow does not sample is named, not silently dropped
    assert "note: the optimize flow samples no requests" in console.getvalue()
    client = MlflowClient(store)
    run = client.get_run(res["run_id"])
    assert run.data.params["optimize.objective"] == "goal"
    assert 0 < run.data.metrics["opt_auc_top10"] and "baseline_auc_top10" in run.data.metrics
    assert run.data.metrics["opt_best_score"] > 0 and run.data.metrics["opt_unscorable"] >= 0
    assert len(client.get_metric_history(res["run_id"], "opt_top10_by_calls")) > 10
    out = Path(res["out_dir"])
    cand = pd.read_csv(out / "optimization_candidates.csv")
    assert "goal" in cand.columns and cand["score"].is_monotonic_decreasing
    calls = pd.read_csv(out / "oracle_calls.csv")
    assert calls["call"].tolist() == list(range(1, len(calls) + 1))
    assert "oracle_calls.csv" in {a.path for a in client.list_artifacts(res["run_id"])}


SABOTAGE = """
import os, signal

def score(smiles):
    # the tracking server dies while the run is optimizing (a real outage, mid-run)
    pid = int(open({pidfile!r}).read())
    try:
        os.killpg(pid, signal.SIGKILL)  # the server and its workers
    except ProcessLookupError:
        pass
    return [len(s) / 10 for s in smiles]
"""


def _mlflow_server(db, port: int):
    import subprocess
    import sys
    import time
    import urllib.request

    proc = subprocess.Popen([sys.executable, "-m", "mlflow", "server", "--backend-store-uri",
                             f"sqlite:///{db}", "--host", "127.0.0.1", "--port", str(port),
                             "--workers", "1", "--no-serve-artifacts",  # files go straight
                             "--default-artifact-root", str(db.parent / "artifacts")],  # there
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True,  # without its job runner: starts 2x faster
                            env={**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"})
    for _ in range(240):
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=1)
            return proc
        except OSError:
            time.sleep(0.5)
    proc.kill()
    raise RuntimeError("mlflow server did not start")


@pytest.mark.slow
def test_tracking_server_dying_mid_run_loses_nothing(harness, tiny_trained, tmp_path):
    import signal
    import socket

    from mlflow.tracking import MlflowClient

    from flows.pipeline import run_flow
    from flows.relog import log_run_dir

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    db, pidfile = tmp_path / "server.db", tmp_path / "server.pid"
    server = _mlflow_server(db, port)
    pidfile.write_text(str(server.pid))
    user = tmp_path / "sabotage.py"
    user.write_text(SABOTAGE.format(pidfile=str(pidfile)))
    uri = f"http://127.0.0.1:{port}"
    cfg = _cfg(tmp_path, tiny_trained[1].checkpoint, uri,
               **{"optimize.objective": f"{user}:score", "optimize.method": "random"})
    os.environ["MLFLOW_HTTP_REQUEST_MAX_RETRIES"] = "0"
    try:
        res = run_flow("optimize", cfg)  # finishes: results on disk, not logged
        assert res["run_id"] is None and res["not_logged"]
        out = Path(res["out_dir"])
        assert (out / "optimization_candidates.csv").is_file() and (out / "summary.json").is_file()
        server.wait(timeout=30)
        # the store is reached again, by another address (its database; also spares a second
        # server start): the run keeps the params it has (MLflow refuses to change one)
        store = f"sqlite:///{db}"
        run_id = log_run_dir(out, cfg, tracking={"tracking_uri": store})
        # the run the outage left RUNNING is finished, not duplicated
        assert run_id == res["not_logged"]
        client = MlflowClient(store)
        run = client.get_run(run_id)
        assert run.info.status == "FINISHED" and "opt_auc_top10" in run.data.metrics
        assert len(client.search_runs([run.info.experiment_id])) == 1
    finally:
        del os.environ["MLFLOW_HTTP_REQUEST_MAX_RETRIES"]
        with contextlib.suppress(ProcessLookupError):  # its workers, if any outlived it
            os.killpg(server.pid, signal.SIGKILL)
