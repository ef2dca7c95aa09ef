"""`molvae log`: a finished run folder (e.g. one written during an MLflow outage) logged as
an MLflow run, once per store."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from molvae.config import RunConfig, flatten

from . import review


def log_run_dir(out_dir: str | Path, cfg: RunConfig, tracking: dict | None = None,
                force: bool = False) -> str:
    """Log a finished run folder (e.g. one written during an MLflow outage) as a run (the
    one an outage left unfinished for this folder, if any, else a new one):
    its params, metrics, files (symlinks skipped), review (description, keyed images,
    curves), its dataset and its model (registered once per weights). The folder's own
    config.json is the run's config; ``tracking`` (e.g. from ``--set tracking.*``) overrides
    where it goes. A folder already logged to that store is refused unless ``force``."""
    from molvae.errors import OutputError
    from molvae.tracking import MlflowTracker, check_uri, logged_runs

    out_dir = Path(out_dir)
    summary_file = out_dir / "summary.json"
    if not summary_file.is_file():
        raise OutputError(f"{out_dir}: not a molvae run folder (no summary.json)")
    try:  # everything read before a run is created: a bad folder leaves no orphan run
        if (out_dir / "config.json").is_file():
            cfg = RunConfig.model_validate_json((out_dir / "config.json").read_text())
        summary = json.loads(summary_file.read_text())
        if not isinstance(summary, dict):
            raise ValueError("not a JSON object")
        made = out_dir / review.RUN_RECORD  # what made the folder (older folders: their name)
        record = json.loads(made.read_text()) if made.is_file() else {}
        if not isinstance(record, dict):
            raise ValueError(f"{review.RUN_RECORD} is not a JSON object")
        top = out_dir / "top_candidates.csv"  # what the run's description reads
        if top.is_file() and "score" not in pd.read_csv(top, nrows=1).columns:
            raise ValueError("top_candidates.csv has no score column")
    except (ValueError, pd.errors.ParserError) as exc:
        raise OutputError(f"{out_dir}: unreadable run record ({str(exc).splitlines()[0]})") from None
    if tracking:
        cfg = cfg.model_copy(update={"tracking": cfg.tracking.model_copy(update=tracking)})
    store = cfg.tracking.tracking_uri or "the default store"
    check_uri(cfg.tracking)
    try:
        previous = logged_runs(cfg.tracking, out_dir)
        orphans = logged_runs(cfg.tracking, out_dir, finished=False)
    except Exception as exc:  # unreachable or not an MLflow store: one line, no run made
        reason = str(exc).splitlines()[0][:200] if str(exc) else type(exc).__name__
        raise OutputError(f"cannot reach MLflow at {store}: {reason}; log it to another store "
                          "with --set tracking.tracking_uri=URI") from None
    if previous and not force:
        raise OutputError(f"{out_dir} is already logged as MLflow run {previous[0]} in "
                          f"{store}; --force logs it again")
    name = str(record.get("flow") or out_dir.name.split("-")[0])
    made_by = {k: str(record[k]) for k in ("data_digest", "code_version") if record.get(k)}
    resumed = bool(orphans) and not force
    if resumed:  # finish the run the outage left behind: no orphan, no twin
        tr = MlflowTracker(cfg.tracking, run_id=orphans[0])
        tr.set_tags({"relogged": "true"})
    else:
        tr = MlflowTracker(cfg.tracking, run_name=out_dir.name,
                           tags={"out_dir": str(out_dir), "relogged": "true", "flow": name,
                                 **made_by})  # the code version that made it, not this one
    try:
        tr.log_params(review.used_params(cfg, name) if name in review.SECTIONS else flatten(cfg),
                      keep_logged=resumed)
        review.log_folder(tr, cfg, out_dir, summary, name, summary.get("model"))
    except BaseException:
        tr.finish(failed=True)
        raise
    tr.finish()
    return tr.run_id
