"""The run folder: every table, image, plot, the HTML report and the summary, written to
disk (atomically) before anything is logged to MLflow."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
from prefect import task
from prefect.cache_policies import NO_CACHE

from molvae import report
from molvae.config import RunConfig

from . import review

IO_RETRIES = dict(retries=2, retry_delay_seconds=1, cache_policy=NO_CACHE)


@task(**IO_RETRIES, task_run_name="write tables, images and report")
def write_outputs(out_dir: Path, tables: dict[str, pd.DataFrame], cfg: RunConfig,
                  summary: dict) -> Path:
    """Every table, image, plot and the HTML report on disk (atomic writes)."""
    for name, df in tables.items():
        if df is not None and len(df):
            report.write_table(df, out_dir / f"{name}.csv")
    ranked, top = tables.get("candidates"), tables.get("top_candidates")
    if top is not None and len(top):
        report.top_grid(top, out_dir / "images" / "top_candidates.png", cfg.tracking.top_images)
    if ranked is not None and len(ranked):
        report.html_report(ranked, out_dir / "report.html", summary=review.readable(summary))
    opt = tables.get("optimization_candidates")
    if opt is not None and len(opt):
        report.top_grid(opt.assign(valid=True), out_dir / "images" / "top_optimized.png",
                        cfg.tracking.top_images)
        report.trajectory_plot(tables["trajectory"], out_dir / "plots" / "trajectory.png",
                               tables.get("baseline_trajectory"), title=cfg.optimize.objective)
    cond = tables.get("conditional")
    if cond is not None and len(cond):
        report.condition_plot(cond, out_dir / "plots" / "conditional.png")
    interp = tables.get("interpolation")
    if interp is not None and len(interp):
        report.interpolation_strips(interp, out_dir / "images" / "interpolation.png",
                                    cfg.generate.interpolate)
    near = tables.get("neighbors")
    if near is not None and len(near):
        report.neighbor_grid(near, out_dir / "images" / "neighbors.png")
    if ranked is not None and len(ranked):
        report.property_scatter(ranked, out_dir / "plots" / "qed_vs_sa.png")
    report.write_text(json.dumps(summary, indent=2, default=str), out_dir / "summary.json")
    return out_dir
