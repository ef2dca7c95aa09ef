"""MLflow stores opened by several processes at once (no Prefect: outside the flows group,
so it runs beside them)."""

import pytest

OPEN_STORE = """
import os, pathlib, sys, time
from molvae.config import TrackingConfig
from molvae.tracking import MlflowTracker
gate = pathlib.Path(sys.argv[2])  # start together: once both have imported mlflow
(gate / str(os.getpid())).touch()
deadline = time.time() + 120
while len(list(gate.iterdir())) < 2 and time.time() < deadline:
    time.sleep(0.01)
tr = MlflowTracker(TrackingConfig(tracking_uri=sys.argv[1]), run_name="racer")
tr.finish()
print(tr.run_id)
"""


@pytest.mark.slow
def test_runs_at_once_on_a_fresh_store_both_log(tmp_path):
    """Two processes opening a new SQLite store at the same moment: both get their run
    (without the lock, one failed with "table ... already exists")."""
    import subprocess
    import sys

    from mlflow.tracking import MlflowClient

    uri = f"sqlite:///{tmp_path / 'fresh' / 'mlflow.db'}"
    gate = tmp_path / "gate"
    gate.mkdir()
    procs = [subprocess.Popen([sys.executable, "-c", OPEN_STORE, uri, str(gate)],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for _ in range(2)]
    outs = [p.communicate(timeout=180) for p in procs]
    assert all(p.returncode == 0 for p in procs), [o[1][-1500:] for o in outs]
    client = MlflowClient(uri)
    runs = client.search_runs([client.get_experiment_by_name("molvae").experiment_id])
    assert sorted(r.info.run_id for r in runs) == sorted(o[0].strip() for o in outs)


def test_a_tracker_leaves_the_process_wide_tracking_uri_alone(tiny_trained, tmp_path,
                                                              monkeypatch):
    """Library code changes no global state: logging and registering a model on one store
    leaves the caller's MLflow tracking URI (a notebook's, say) as it was."""
    import warnings

    import mlflow
    import pandas as pd
    from mlflow.tracking import MlflowClient

    from molvae.config import SHIPPED_TRAIN, TrackingConfig
    from molvae.tracking import MlflowTracker

    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    mine = f"sqlite:///{tmp_path / 'notebook.db'}"
    mlflow.set_tracking_uri(mine)
    store = f"sqlite:///{tmp_path / 'runs.db'}"
    tr = MlflowTracker(TrackingConfig(tracking_uri=store), run_name="scoped")
    with warnings.catch_warnings(record=True) as caught:  # what `molvae run` prints
        warnings.simplefilter("always")
        version = tr.log_model(tiny_trained[1].checkpoint, "scoped-model")
        tr.log_dataset(pd.read_csv(SHIPPED_TRAIN, nrows=10), str(SHIPPED_TRAIN), "train", "ab")
    tr.finish()
    noise = ("interpreted in multiple ways", "integer column", "Add type hints")
    assert not [str(w.message) for w in caught if any(n in str(w.message) for n in noise)]
    assert mlflow.get_tracking_uri() == mine
    assert str(MlflowClient(store).get_model_version("scoped-model", version).version) == version
    mlflow.set_tracking_uri(None)


def test_a_prepared_store_has_its_experiment_and_a_run_starts_in_it(tmp_path):
    """``prepare_store`` (what `molvae run` does while Prefect's server starts) creates a new
    SQLite store's tables and the experiment, which the run's tracker then uses; a server
    URI is left alone (nothing is contacted)."""
    from mlflow.tracking import MlflowClient

    from molvae.config import TrackingConfig
    from molvae.tracking import MlflowTracker, prepare_store

    db = tmp_path / "new" / "mlflow.db"
    cfg = TrackingConfig(tracking_uri=f"sqlite:///{db}", experiment="prepared")
    prepare_store(cfg)
    exp = MlflowClient(cfg.tracking_uri).get_experiment_by_name("prepared")
    assert db.is_file() and exp is not None
    assert exp.tags["mlflow.experimentKind"] == "custom_model_development"
    tr = MlflowTracker(cfg, run_name="after")
    assert tr.experiment_id == exp.experiment_id
    tr.finish()
    prepare_store(TrackingConfig(tracking_uri="http://127.0.0.1:9"))  # returns at once


def test_the_mlflow_ui_command_works_from_any_folder(tmp_path, monkeypatch):
    from molvae.tracking import open_run_commands

    monkeypatch.chdir(tmp_path)
    assert open_run_commands("sqlite:///mlflow.db") == (
        f"mlflow ui --backend-store-uri sqlite:///{tmp_path / 'mlflow.db'} --port 5000")
    assert open_run_commands("sqlite:////srv/my runs/m.db") == (
        "mlflow ui --backend-store-uri 'sqlite:////srv/my runs/m.db' --port 5000")
