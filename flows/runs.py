"""A flow run's MLflow run: start it (with the run folder and the Prefect flow run linked
to it), finish it, and degrade to "results on disk, log them later" when MLflow is down."""

from __future__ import annotations

import contextlib
import json
import signal
import threading
import time
import uuid
from pathlib import Path

from prefect import get_run_logger
from prefect.runtime import flow_run as prefect_flow_run

from molvae import report
from molvae.cli.common import outside_imports
from molvae.config import RunConfig

from . import review
from .progress import stage


def prepare_tracking(cfg: RunConfig) -> None:
    """Prepare the run's MLflow store in a thread (``molvae.tracking.prepare_store``): a new
    SQLite store's tables take ~2.3 s (and MLflow's import ~1.7 s) that overlap the start of
    Prefect's temporary server, during which this process only waits. Not a daemon: a run
    that fails at once still lets the store finish its tables. A failure here is left to
    the run, which reports MLflow problems itself."""
    if not cfg.tracking.enabled:
        return

    def prepare() -> None:
        try:
            from molvae.tracking import prepare_store

            prepare_store(cfg.tracking)
        except Exception:  # noqa: BLE001 - the run's own tracker meets it and says so
            pass

    threading.Thread(target=prepare, name="prepare-mlflow-store").start()


def tracker(cfg: RunConfig, run_id: str):
    from molvae.tracking import MlflowTracker

    return MlflowTracker(cfg.tracking, run_id=run_id)


def guard_sigterm() -> None:
    """Prefect's SIGTERM handler, which it installs for a flow run, run only outside Python's
    import machinery (``molvae.cli.common.outside_imports``: a SIGTERM there hung the run);
    Prefect puts back the handler before its own as the run ends."""
    if threading.current_thread() is threading.main_thread():
        handler = signal.getsignal(signal.SIGTERM)
        if callable(handler) and not hasattr(handler, "guards"):
            signal.signal(signal.SIGTERM, outside_imports(handler))


def start(cfg: RunConfig, name: str, digest: str) -> tuple[str | None, Path]:
    guard_sigterm()
    run_name = f"{name}-{time.strftime('%Y%m%d-%H%M%S')}-{uuid.uuid4().hex[:6]}"
    out_dir = Path(cfg.out_dir) / run_name  # one folder per run: concurrent runs never collide
    out_dir.mkdir(parents=True, exist_ok=True)
    report.write_text(cfg.model_dump_json(indent=2), out_dir / "config.json")
    from molvae.tracking import code_version

    record = {"flow": name, "data_digest": digest, "code_version": code_version()}
    report.write_text(json.dumps(record, indent=2), out_dir / review.RUN_RECORD)  # `molvae log`
    run_id = None
    if cfg.tracking.enabled:
        from molvae.tracking import MlflowTracker

        try:
            tr = MlflowTracker(cfg.tracking, run_name=run_name,
                               tags={"data_digest": digest, "flow": name, "out_dir": str(out_dir)})
            tr.log_params(review.used_params(cfg, name))
            run_id = tr.run_id
            tr.set_tags({"prefect_flow_run_id": str(prefect_flow_run.id or "")})
        except Exception as exc:  # an MLflow outage must not lose the run's results
            get_run_logger().warning(
                "MLflow unavailable (%s); results go to %s only. Log them later with: "
                "molvae log %s", str(exc).splitlines()[0][:200], out_dir, out_dir)
    _link_flow_run(run_name, run_id, out_dir)
    return run_id, out_dir


def _link_flow_run(run_name: str, mlflow_run_id: str | None, out_dir: Path) -> None:
    """Name the Prefect flow run after the MLflow run (and the run folder) and tag it with
    the MLflow run id, so each UI leads to the other."""
    from prefect.client.orchestration import get_client

    if prefect_flow_run.id is None:
        return
    tags = [*prefect_flow_run.tags, f"run:{run_name}"]
    if mlflow_run_id:
        tags.append(f"mlflow_run_id:{mlflow_run_id}")
    try:
        with get_client(sync_client=True) as client:
            client.update_flow_run(prefect_flow_run.id, name=run_name, tags=tags)
    except Exception as exc:  # a cosmetic link must never fail a run
        get_run_logger().warning("could not rename the Prefect flow run: %s", exc)
    stage(f"run {run_name} (MLflow run {mlflow_run_id or 'none: not logged'}), results in "
          f"{out_dir}")


@contextlib.contextmanager
def finishing(cfg: RunConfig, run_id: str | None):
    """Mark the MLflow run FINISHED when the block succeeds, FAILED when it raises (as far
    as MLflow can be reached: an outage leaves it for `molvae log` to finish)."""
    state = {"run_id": run_id}  # the block clears it when it has ended the run itself
    try:
        yield state
    except BaseException:
        if state["run_id"]:
            end(cfg, state["run_id"], failed=True)
        raise
    if state["run_id"]:
        end(cfg, state["run_id"], failed=False)


def end(cfg: RunConfig, run_id: str, failed: bool) -> None:
    try:
        tracker(cfg, run_id).finish(failed=failed)
    except Exception as exc:
        get_run_logger().warning("could not mark MLflow run %s %s (%s)", run_id,
                                 "failed" if failed else "finished", str(exc).splitlines()[0][:200])


def uri(cfg: RunConfig) -> str:
    from molvae.tracking import resolve_uri

    return resolve_uri(cfg.tracking)
