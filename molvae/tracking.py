"""MLflow tracking: the ONE molvae module that imports mlflow. Implements train.Callback.

Uses ``MlflowClient`` with explicit run ids (MLflow's active run is thread-local, and flow
tasks run on other threads). With no tracking URI configured, runs go to a SQLite store
``mlflow.db`` in the working directory.
"""

from __future__ import annotations

import logging
import os
import subprocess
import tempfile
from pathlib import Path
from typing import Any

import pandas as pd

from .config import TrackingConfig

logger = logging.getLogger(__name__)

DEFAULT_URI = "sqlite:///mlflow.db"

# Models-from-code: MLflow stores this source and runs it on load, so loading the model
# unpickles nothing. It is an artifact, not a molvae module.
PYFUNC_CODE = '''\
"""molvae model for MLflow pyfunc (models-from-code).

predict(model_input, params):
  params mode="sample" (default): n, seed, temperature -> generated molecules
  params mode="reconstruct": model_input["smiles"] -> input, reconstructed, exact_match
  params mode="encode": model_input["smiles"] -> latent means/variances, elbo
"""
import mlflow
import pandas as pd


class MolvaeModel(mlflow.pyfunc.PythonModel):
    def load_context(self, context):
        from molvae.checkpoint import load_model

        self.lm = load_model(context.artifacts["checkpoint"])

    def predict(self, context, model_input, params=None):
        from molvae import generate, latent

        params = dict(params or {})
        mode = params.get("mode", "sample")
        if mode == "sample":
            return generate.sample(self.lm, num_samples=int(params.get("n", 10)),
                                   seed=int(params.get("seed", 0)),
                                   temperature=float(params.get("temperature", 1.0)), workers=1)
        smiles = list(pd.DataFrame(model_input)["smiles"])
        if mode == "reconstruct":
            return generate.reconstruct(self.lm, smiles)
        if mode == "encode":
            return latent.code_table(self.lm, smiles)
        raise ValueError(f"unknown mode {mode!r}: sample, reconstruct or encode")


mlflow.models.set_model(MolvaeModel())
'''


def resolve_uri(cfg: TrackingConfig) -> str:
    return cfg.tracking_uri or os.environ.get("MLFLOW_TRACKING_URI") or DEFAULT_URI


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


class MlflowTracker:
    """One MLflow run. Also a ``train.Callback``: per-epoch metrics are logged as they come."""

    def __init__(self, cfg: TrackingConfig, run_name: str | None = None,
                 tags: dict[str, str] | None = None, run_id: str | None = None):
        import mlflow
        from mlflow.tracking import MlflowClient

        self.cfg = cfg
        self.uri = resolve_uri(cfg)
        mlflow.set_tracking_uri(self.uri)
        self.client = MlflowClient(self.uri)
        if run_id is not None:
            self.run_id = run_id
            self.experiment_id = self.client.get_run(run_id).info.experiment_id
            return
        exp = self.client.get_experiment_by_name(cfg.experiment)
        self.experiment_id = exp.experiment_id if exp else self.client.create_experiment(cfg.experiment)
        all_tags = {"code_version": code_version(), **(tags or {})}
        run = self.client.create_run(self.experiment_id, run_name=run_name, tags=all_tags)
        self.run_id = run.info.run_id
        self._step = 0

    # ------------------------------------------------------------------ basics

    def log_params(self, params: dict[str, Any]) -> None:
        from mlflow.entities import Param

        items = [Param(k, str(v)[:6000]) for k, v in params.items()]
        for i in range(0, len(items), 100):
            self.client.log_batch(self.run_id, params=items[i : i + 100])

    def log_metrics(self, metrics: dict[str, float], step: int | None = None,
                    prefix: str = "") -> None:
        import math
        import time

        from mlflow.entities import Metric

        ts = int(time.time() * 1000)
        items = [Metric(f"{prefix}{k}".replace("@", "_at_"), float(v), ts, step or 0)
                 for k, v in metrics.items()
                 if isinstance(v, int | float) and math.isfinite(float(v))]
        for i in range(0, len(items), 500):
            self.client.log_batch(self.run_id, metrics=items[i : i + 500])

    def set_tags(self, tags: dict[str, str]) -> None:
        for k, v in tags.items():
            self.client.set_tag(self.run_id, k, str(v))

    def log_artifact(self, path: str | Path, artifact_path: str | None = None) -> None:
        if path is not None and Path(path).exists():
            self.client.log_artifact(self.run_id, str(path), artifact_path)

    def log_table(self, df: pd.DataFrame, name: str, max_rows: int = 5000) -> None:
        """MLflow table (JSON, shown in the UI's artifact view and evaluation tab)."""
        clean = df.head(max_rows).copy()
        for c in clean.columns:
            if clean[c].dtype == object:
                clean[c] = clean[c].astype(str)
        self.client.log_table(self.run_id, data=clean, artifact_file=f"{name}.json")

    def log_dataset(self, df: pd.DataFrame, source: str, name: str, digest: str,
                    context: str = "training") -> None:
        import mlflow
        from mlflow.entities import DatasetInput, InputTag

        ds = mlflow.data.from_pandas(df, source=source, name=name, digest=digest[:36])
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

    def log_model(self, checkpoint: str | Path, registered_model: str | None = None) -> str | None:
        """Log the checkpoint as a pyfunc model (models-from-code) and register it.

        Returns the registered version (None when not registering)."""
        import mlflow

        from molvae.checkpoint import companion_files

        with tempfile.TemporaryDirectory() as tmp:
            code = Path(tmp) / "molvae_pyfunc.py"
            code.write_text(PYFUNC_CODE)
            example = pd.DataFrame({"smiles": ["CC(=O)Oc1ccccc1C(=O)O"]})
            signature = mlflow.models.infer_signature(
                example, None,
                params={"mode": "sample", "n": 10, "seed": 0, "temperature": 1.0})
            with mlflow.start_run(run_id=self.run_id):
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
        if version is not None:
            self.set_tags({"registered_model": f"{registered_model}/{version}"})
        return None if version is None else str(version)

    # ------------------------------------------------------------------ folders

    def log_run_dir(self, out_dir: str | Path) -> None:
        """Log every file a flow wrote (candidates, images, plots, report) as artifacts;
        CSV tables named in TABLES also become MLflow tables."""
        out_dir = Path(out_dir)
        for path in sorted(out_dir.rglob("*")):
            if not path.is_file() or path.name.startswith("."):  # temp files of atomic writes
                continue
            rel = path.relative_to(out_dir).parent
            self.log_artifact(path, None if str(rel) == "." else str(rel))
            if path.suffix == ".csv" and path.stem in TABLES:
                self.log_table(pd.read_csv(path), f"tables/{path.stem}")


TABLES = ("candidates", "top_candidates", "optimization_candidates", "interpolation",
          "neighbors", "trajectory", "baseline_trajectory")


def open_run_commands(uri: str) -> str:
    """The command that opens the MLflow UI on this store."""
    return f"mlflow ui --backend-store-uri {uri} --port 5000"
