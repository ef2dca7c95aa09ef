"""MLflow tracking: the ONE molvae module that imports mlflow. Implements train.Callback.

Uses ``MlflowClient`` with explicit run ids (MLflow's active run is thread-local, and flow
tasks run on other threads). With no tracking URI configured, runs go to a SQLite store
``mlflow.db`` in the working directory.
"""

from __future__ import annotations

import contextlib
import logging
import os
import subprocess
import tempfile
from pathlib import Path
from typing import Any

import pandas as pd

from .config import TrackingConfig
from .errors import ConfigError

logger = logging.getLogger(__name__)

DEFAULT_URI = "sqlite:///mlflow.db"
TABLE_ROWS = 10_000  # rows of a table logged to MLflow (the CSV artifact has all)
EXPERIMENT_KIND = "mlflow.experimentKind"

# Models-from-code: MLflow stores this source and runs it on load, so loading the model
# unpickles nothing. It is an artifact, not a molvae module.
PYFUNC_CODE = '''\
"""molvae model for MLflow pyfunc (models-from-code).

predict(model_input, params):
  params mode="sample" (default; model_input may be empty): n, seed, temperature, condition
    ("logp=2:3 tpsa=70", a conditional model's request) -> generated molecules
  params mode="reconstruct": model_input["smiles"] -> input, reconstructed, exact_match
  params mode="encode": model_input["smiles"] -> latent means/variances, elbo
"""
import mlflow
import pandas as pd


class MolvaeModel(mlflow.pyfunc.PythonModel):
    def load_context(self, context):
        from molvae.checkpoint import load_model

        self.loaded = load_model(context.artifacts["checkpoint"])

    def predict(self, context, model_input: pd.DataFrame, params=None):  # the hint: no warning
        from molvae import generate, latent

        params = dict(params or {})
        mode = params.get("mode", "sample")
        if mode == "sample":
            from molvae.conditions import parse_targets

            condition = str(params.get("condition") or "")  # "logp=2:3 tpsa=70": a CVAE's request
            return generate.sample(self.loaded, num_samples=int(params.get("n", 10)),
                                   seed=int(params.get("seed", 0)),
                                   temperature=float(params.get("temperature", 1.0)), workers=1,
                                   condition=parse_targets(condition) if condition else {})
        frame = pd.DataFrame(model_input)
        if mode in ("reconstruct", "encode") and "smiles" not in frame:
            raise ValueError(f"mode {mode!r} reads the molecules from a 'smiles' column")
        smiles = list(frame.get("smiles", []))
        if mode == "reconstruct":
            return generate.reconstruct(self.loaded, smiles)
        if mode == "encode":
            return latent.code_table(self.loaded, smiles)
        raise ValueError(f"unknown mode {mode!r}: sample, reconstruct or encode")


mlflow.models.set_model(MolvaeModel())
'''


def resolve_uri(cfg: TrackingConfig) -> str:
    return cfg.tracking_uri or os.environ.get("MLFLOW_TRACKING_URI") or DEFAULT_URI


def check_uri(cfg: TrackingConfig) -> None:
    """A store a run can log to, before it starts: a folder (MLflow's file store, which
    MLflow no longer serves) is refused; sqlite:///FILE.db, http(s)://HOST, databricks and
    other database URIs pass."""
    uri = resolve_uri(cfg)
    folder = "://" not in uri and not uri.startswith(("sqlite:", "databricks"))
    if cfg.enabled and (folder or uri.startswith("file:")):
        raise ConfigError(f"tracking URI {uri!r} is a folder (MLflow's file store, not served by "
                          "MLflow 3): give sqlite:///FILE.db or http://HOST:PORT "
                          "(tracking.tracking_uri or MLFLOW_TRACKING_URI)")


@contextlib.contextmanager
def store_lock(uri: str):
    """Hold an exclusive lock beside a SQLite store (``<db>.lock``) while the block runs:
    processes that open a fresh store at once would otherwise race to create its tables
    ("table ... already exists") and its experiment. Other stores: no lock."""
    if not uri.startswith("sqlite:///"):
        yield
        return
    import fcntl

    db = Path(uri[len("sqlite:///"):])
    db.parent.mkdir(parents=True, exist_ok=True)
    with open(db.with_name(db.name + ".lock"), "a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def code_version() -> str:
    """git commit of the working tree (with '-dirty'), else the package version."""
    try:
        here = Path(__file__).resolve().parent
        rev = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=here, text=True,
                             capture_output=True, timeout=5)
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"],
                               cwd=here, text=True, capture_output=True, timeout=5)
        if rev.returncode == 0:
            return rev.stdout.strip() + ("-dirty" if dirty.stdout.strip() else "")
    except (OSError, subprocess.SubprocessError):
        pass
    from . import __version__

    return __version__


@contextlib.contextmanager
def _fluent_uri(uri: str):
    """MLflow's fluent API (``log_model``) reads the process-wide tracking URI: set it for
    the call only, and put the caller's back (library code changes no global state)."""
    import mlflow

    before = mlflow.get_tracking_uri()
    mlflow.set_tracking_uri(uri)
    try:
        yield
    finally:
        mlflow.set_tracking_uri(before)


def _experiment(client, name: str):
    """(the experiment or None if just created, its id); created as a model-training one."""
    exp = client.get_experiment_by_name(name)
    return exp, exp.experiment_id if exp else client.create_experiment(
        name, tags={EXPERIMENT_KIND: "custom_model_development"})


def prepare_store(cfg: TrackingConfig) -> None:
    """Open a local SQLite store (creating its tables, ~2.3 s when new) and its experiment,
    so that a run started next finds them ready: `molvae run` does this while Prefect's
    temporary server starts. Other stores: nothing to prepare (a server migrates its own)."""
    uri = resolve_uri(cfg)
    if not uri.startswith("sqlite:///"):
        return
    from mlflow.tracking import MlflowClient

    with store_lock(uri):
        _experiment(MlflowClient(uri), cfg.experiment)


class MlflowTracker:
    """One MLflow run. Also a ``train.Callback``: per-epoch metrics are logged as they come."""

    def __init__(self, cfg: TrackingConfig, run_name: str | None = None,
                 tags: dict[str, str] | None = None, run_id: str | None = None):
        from mlflow.tracking import MlflowClient

        self.cfg = cfg
        self.uri = resolve_uri(cfg)  # the client's; the process-wide URI stays as it was
        with store_lock(self.uri):  # two runs on a fresh store: one creates its tables
            self.client = MlflowClient(self.uri)
            if run_id is not None:
                self.run_id = run_id
                self.experiment_id = self.client.get_run(run_id).info.experiment_id
                return
            exp, self.experiment_id = _experiment(self.client, cfg.experiment)
        if exp and EXPERIMENT_KIND not in exp.tags:
            # MLflow 3 opens an untagged experiment in its GenAI view; runs are model training
            self.client.set_experiment_tag(self.experiment_id, EXPERIMENT_KIND,
                                           "custom_model_development")
        all_tags = {"code_version": code_version(), **(tags or {})}
        run = self.client.create_run(self.experiment_id, run_name=run_name, tags=all_tags)
        self.run_id = run.info.run_id
        self._step = 0

    # ------------------------------------------------------------------ basics

    def log_params(self, params: dict[str, Any], keep_logged: bool = False) -> None:
        """``keep_logged``: a run continued (e.g. after an outage) keeps the params it already
        has (MLflow refuses to change one, e.g. the store's address when it is reached
        another way) and gets the rest."""
        from mlflow.entities import Param

        if keep_logged:
            logged = self.client.get_run(self.run_id).data.params
            params = {k: v for k, v in params.items() if k not in logged}
        items = [Param(k, str(v)[:6000]) for k, v in params.items()]
        for i in range(0, len(items), 100):
            self.client.log_batch(self.run_id, params=items[i : i + 100])

    def log_metrics(self, metrics: dict[str, float], step: int | None = None,
                    prefix: str = "") -> None:
        import math
        import time

        from mlflow.entities import Metric

        ts = int(time.time() * 1000)
        self._log_batches([Metric(f"{prefix}{k}".replace("@", "_at_"), float(v), ts, step or 0)
                           for k, v in metrics.items()
                           if isinstance(v, int | float) and math.isfinite(float(v))])

    def _log_batches(self, items: list) -> None:
        """MLflow Metric entities, 500 per request (its batch limit is 1,000)."""
        for i in range(0, len(items), 500):
            self.client.log_batch(self.run_id, metrics=items[i : i + 500])

    def set_tags(self, tags: dict[str, str]) -> None:
        for k, v in tags.items():
            self.client.set_tag(self.run_id, k, str(v))

    def log_artifact(self, path: str | Path, artifact_path: str | None = None) -> None:
        if path is not None and Path(path).exists():
            self.client.log_artifact(self.run_id, str(path), artifact_path)

    def log_series(self, name: str, steps, values) -> None:
        """One metric as a stepped series (a line chart in the UI), e.g. the best score
        against the oracle calls."""
        import math
        import time

        from mlflow.entities import Metric

        ts = int(time.time() * 1000)
        self._log_batches([Metric(name, float(v), ts, int(s))
                           for s, v in zip(steps, values, strict=True) if math.isfinite(float(v))])

    def log_image(self, path: str | Path, key: str, step: int = 0) -> None:
        """A PNG as a keyed image: the run page shows it and the compare view sets it
        beside the same key of other runs."""
        from PIL import Image

        if path is not None and Path(path).is_file():
            with Image.open(path) as img:
                self.client.log_image(self.run_id, img.convert("RGB"), key=key, step=step)

    def describe(self, text: str) -> None:
        """The run's description (MLflow's note on the run page), Markdown."""
        self.client.set_tag(self.run_id, "mlflow.note.content", text)

    def log_table(self, df: pd.DataFrame, name: str, max_rows: int = TABLE_ROWS) -> None:
        """MLflow table (JSON, shown in the UI's artifact view and evaluation tab); the
        first ``max_rows`` rows, the cut stated in a tag."""
        if len(df) > max_rows:
            self.set_tags({f"table.{name}": f"first {max_rows:,} of {len(df):,} rows"})
        clean = df.head(max_rows).copy()
        for c in clean.columns:
            if clean[c].dtype == object:
                clean[c] = clean[c].astype(str)
        self.client.log_table(self.run_id, data=clean, artifact_file=f"{name}.json")

    def log_dataset(self, df: pd.DataFrame, source: str, name: str, digest: str,
                    context: str = "training") -> None:
        import mlflow
        from mlflow.entities import DatasetInput, InputTag

        ds = mlflow.data.from_pandas(df, source=_file_source(source), name=name,
                                     digest=digest[:36])
        self.client.log_inputs(self.run_id, [DatasetInput(
            ds._to_mlflow_entity(), tags=[InputTag("mlflow.data.context", context)])])

    def finish(self, failed: bool = False) -> None:
        self.client.set_terminated(self.run_id, "FAILED" if failed else "FINISHED")

    # ------------------------------------------------------------------ callback

    def on_train_start(self, info: dict[str, Any]) -> None:
        self.log_params({f"train_info.{k}": v for k, v in info.items()})

    def on_batch_end(self, step: int, metrics: dict[str, float]) -> None:
        if step % 50 == 0:
            self.log_metrics({k: v for k, v in metrics.items() if k != "epoch_progress"},
                             step=step, prefix="train_")

    def on_epoch_end(self, epoch: int, metrics: dict[str, float]) -> None:
        self.log_metrics(metrics, step=epoch)

    def on_train_end(self, result) -> None:
        self.log_metrics({"train_seconds": result.seconds})

    # ------------------------------------------------------------------ model

    def registered_version(self, registered_model: str, sha256: str) -> str | None:
        """The version of ``registered_model`` holding these weights (tag ``model_sha256``),
        or None."""
        found = self.client.search_model_versions(
            f"name='{registered_model}' and tags.model_sha256='{sha256}'")
        return str(min(int(v.version) for v in found)) if found else None

    def log_model(self, checkpoint: str | Path, registered_model: str | None = None,
                  description: str = "", tags: dict[str, str] | None = None,
                  alias: str = "latest-run") -> str | None:
        """Register the checkpoint as a pyfunc model (models-from-code) unless a version
        with the same weights (sha256) is registered already: then that version is reused.
        A new version gets ``tags`` and ``description`` (a reused one keeps those of the run
        that registered it); either way it gets ``alias``, and the run a ``registered_model``
        tag. Returns the version (None when not registering)."""
        from .data import file_digest

        sha = file_digest(checkpoint)
        version = self.registered_version(registered_model, sha) if registered_model else None
        if version is None:
            version = self._log_pyfunc(checkpoint, registered_model)
            reused = False
        else:
            reused = True
            logger.info("model %s version %s has these weights (sha256 %s): reused",
                        registered_model, version, sha[:12])
        if version is None:
            return None
        if not reused:  # a reused version keeps what the run that registered it gave it
            for k, v in {**(tags or {}), "model_sha256": sha}.items():
                self.client.set_model_version_tag(registered_model, version, k, str(v))
            if description:
                self.client.update_model_version(registered_model, version, description)
        self.client.set_registered_model_alias(registered_model, alias, version)
        self.set_tags({"registered_model": f"{registered_model}/{version}",
                       "registered_model_reused": str(reused).lower()})
        return version

    def _log_pyfunc(self, checkpoint: str | Path, registered_model: str | None) -> str | None:
        import mlflow

        from .checkpoint import companion_files

        with tempfile.TemporaryDirectory() as tmp:
            code = Path(tmp) / "molvae_pyfunc.py"
            code.write_text(PYFUNC_CODE)
            signature = _pyfunc_signature()
            with _fluent_uri(self.uri), mlflow.start_run(run_id=self.run_id):
                info = mlflow.pyfunc.log_model(
                    name="model",
                    python_model=str(code),
                    # the hashes file lands beside the checkpoint, where load_model looks
                    artifacts={"checkpoint": str(checkpoint),
                               **{f"companion_{i}": str(f)
                                  for i, f in enumerate(companion_files(checkpoint))}},
                    pip_requirements=["molvae", "torch", "rdkit", "selfies", "pandas"],
                    signature=signature,
                    registered_model_name=registered_model or None,
                )
        version = getattr(info, "registered_model_version", None)
        return None if version is None else str(version)

    # ------------------------------------------------------------------ folders

    def log_run_dir(self, out_dir: str | Path) -> None:
        """Log every file a flow wrote (candidates, images, plots, report) as artifacts;
        CSV tables named in TABLES also become MLflow tables."""
        out_dir = Path(out_dir)
        for path in sorted(out_dir.rglob("*")):
            # temp files of atomic writes, and links (a link could point anywhere)
            if path.is_symlink() or not path.is_file() or path.name.startswith("."):
                continue
            rel = path.relative_to(out_dir).parent
            self.log_artifact(path, None if str(rel) == "." else str(rel))
            if path.suffix == ".csv" and path.stem in TABLES:
                self.log_table(pd.read_csv(path), f"tables/{path.stem}")


TABLES = ("candidates", "top_candidates", "optimization_candidates", "interpolation",
          "neighbors", "trajectory", "baseline_trajectory", "oracle_calls",
          "conditional_candidates")


def logged_runs(cfg: TrackingConfig, out_dir: str | Path, finished: bool = True) -> list[str]:
    """Ids of the runs in ``cfg``'s store that logged the run folder ``out_dir``: finished
    ones, or (``finished=False``) those an outage left running or failed."""
    from mlflow.tracking import MlflowClient

    with store_lock(resolve_uri(cfg)):
        client = MlflowClient(resolve_uri(cfg))
        exp = client.get_experiment_by_name(cfg.experiment)
    if exp is None:
        return []
    folder = str(out_dir).replace("'", "")
    status = "=" if finished else "!="
    runs = client.search_runs([exp.experiment_id], f"tags.out_dir = '{folder}' and "
                              f"attributes.status {status} 'FINISHED'")
    return [r.info.run_id for r in runs]


def open_run_commands(uri: str) -> str:
    """The command that opens the MLflow UI on this store, from any folder (a SQLite
    store's path made absolute)."""
    import shlex

    if uri.startswith("sqlite:///"):
        uri = "sqlite:///" + str(Path(uri[len("sqlite:///"):]).resolve())
    return f"mlflow ui --backend-store-uri {shlex.quote(uri)} --port 5000"


def run_url(uri: str, run_id: str, ui: str = "http://127.0.0.1:5000") -> str:
    """The run's page in the MLflow UI (``ui``: where the UI serves; a tracking server's
    own address when ``uri`` is one)."""
    from mlflow.tracking import MlflowClient

    base = uri.rstrip("/") if uri.startswith("http") else ui
    experiment = MlflowClient(uri).get_run(run_id).info.experiment_id
    return f"{base}/#/experiments/{experiment}/runs/{run_id}"


def _pyfunc_signature():
    """The pyfunc's input, output and params, written out (inferring them from an example
    warns about its integer columns)."""
    from mlflow.models import ModelSignature
    from mlflow.types import ColSpec, ParamSchema, ParamSpec, Schema

    return ModelSignature(
        inputs=Schema([ColSpec("string", "smiles", required=False)]),  # mode sample: none
        outputs=Schema([ColSpec("string", "smiles"), ColSpec("string", "selfies"),
                        ColSpec("boolean", "valid"), ColSpec("string", "source"),
                        ColSpec("long", "seed"), ColSpec("long", "step")]),
        params=ParamSchema([ParamSpec("mode", "string", "sample"), ParamSpec("n", "long", 10),
                            ParamSpec("seed", "long", 0),
                            ParamSpec("temperature", "double", 1.0),
                            ParamSpec("condition", "string", "")]))


def _file_source(path: str):
    """A local file as a dataset source, resolved as MLflow resolves it but without its
    warning: MLflow registers two local-file source classes (schemes "" and "file"), both
    matching any path, and takes the last."""
    from mlflow.data.dataset_source_registry import get_registered_sources

    local = [s for s in get_registered_sources() if s.__name__ == "LocalArtifactDatasetSource"]
    return local[-1](str(path)) if local else path
