"""What a reviewer reads on an MLflow run page: the params the run used, the model's own
training record, a description in words, keyed images, stepped curves, the ranked tables.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from molvae.config import SHIPPED_MODEL, RunConfig, flatten

# config sections each flow reads (the others keep their defaults and are not logged)
SECTIONS = {
    "train": ("data", "model", "train", "generate", "tracking"),
    "generate": ("generate", "conditional", "score", "tracking"),
    "optimize": ("optimize", "score", "tracking"),
    "pipeline": ("generate", "conditional", "score", "optimize", "tracking"),
}
RUN_KEYS = {"train": ("out_dir",), "generate": ("model_path", "out_dir", "runner", "shards"),
            "optimize": ("model_path", "out_dir"),
            "pipeline": ("model_path", "out_dir", "runner", "shards")}
# keyed images: (file in the run folder, key) shown on the run page and in compare views
IMAGES = (("images/top_candidates.png", "top_candidates"),
          ("images/top_optimized.png", "top_optimized"),
          ("images/interpolation.png", "interpolation"),
          ("images/neighbors.png", "neighbors"),
          ("plots/qed_vs_sa.png", "qed_vs_sa"),
          ("plots/properties.png", "property_distributions"),
          ("plots/trajectory.png", "optimization_trajectory"),
          ("plots/conditional.png", "conditional_requested_vs_achieved"))
# stepped metrics: (table, x column, y column, metric name)
CURVES = (("trajectory", "oracle_calls", "best_score", "opt_best_score_by_calls"),
          ("baseline_trajectory", "oracle_calls", "best_score", "baseline_best_score_by_calls"),
          ("oracle_calls", "call", "top10_mean", "opt_top10_by_calls"),
          ("baseline_oracle_calls", "call", "top10_mean", "baseline_top10_by_calls"))


# the figures a summary shows, in words, and how each reads: a count, a share (%), a value
HEADLINE = (("scored_candidates", "molecules generated and scored", "count"),
            ("validity", "valid", "share"), ("uniqueness@10k", "unique (of 10k)", "share"),
            ("novelty", "novel (not in the training set)", "share"),
            ("filters", "pass the MOSES filters", "share"),
            ("fcd", "FCD vs MOSES test (lower is better)", "value"),
            ("intdiv1", "internal diversity (0..1)", "value"),
            ("ranked_candidates", "ranked (valid, unique)", "count"),
            ("top_known_skipped", "training molecules kept out of the top set", "count"),
            ("opt_best_score", "optimization: best score", "value"),
            ("baseline_best_score", "prior sampling at the same budget: best score", "value"),
            ("opt_oracle_calls", "optimization: oracle calls", "count"),
            ("opt_auc_top10", "optimization: AUC of the top-10 mean (PMO)", "value"),
            ("baseline_auc_top10", "prior sampling: AUC of the top-10 mean (PMO)", "value"),
            ("opt_unscorable", "optimization: molecules the objective could not score", "count"),
            ("seconds_sample", "seconds sampling", "seconds"),
            ("seconds_score", "seconds scoring", "seconds"),
            ("seconds_nearest", "seconds finding nearest known molecules", "seconds"))


RUN_RECORD = ".run.json"  # in a run folder: the flow, data digest and code version that made it


def fmt(value, kind: str = "value") -> str:
    """A figure as a person reads it: counts as integers, shares as percentages."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return str(value)
    if kind == "count":
        return f"{int(value):,}"
    if kind == "share":
        return f"{value:.1%}"
    if kind == "seconds":
        return f"{value:.0f} s"
    return f"{value:.3f}"


def readable(summary: dict) -> dict[str, str]:
    """The headline figures of a run summary, labelled and formatted."""
    return {label: fmt(summary[k], kind) for k, label, kind in HEADLINE if k in summary}


def used_params(cfg: RunConfig, name: str) -> dict[str, str]:
    """The config values flow ``name`` reads: its sections, plus data/model/train when it
    trains (``retrain``)."""
    sections = set(SECTIONS[name])
    if cfg.retrain:
        sections |= {"data", "model", "train"}
    params = {k: v for k, v in flatten(cfg).items() if k.split(".")[0] in sections}
    params.update({k: str(getattr(cfg, k)) for k in RUN_KEYS[name]})
    if "model_path" in params and cfg.model_path is None and not cfg.retrain:
        params["model_path"] = f"shipped (data/model/{SHIPPED_MODEL.name})"
    return params


def model_params(loaded) -> dict[str, str]:
    """The model's own record: its architecture and the training run that made it."""
    out = {f"model.{k}": str(v) for k, v in loaded.model_config.model_dump(mode="json").items()}
    train = loaded.train_config or {}
    out.update({f"model_train.{k}": str(v)[:500] for k, v in train.items()
                if not isinstance(v, dict)})
    out.update({f"model_info.{k}": str(v)[:500] for k, v in (loaded.info or {}).items()})
    return out


def describe(name: str, summary: dict, model_label: str, top: pd.DataFrame | None) -> str:
    """The run's description in words (Markdown) for MLflow's note on the run page."""
    lines = [f"**molvae {name}** with model `{model_label}`."]
    n = summary.get("scored_candidates")
    if n:
        lines.append(
            f"Sampled and scored {int(n):,} molecules: validity {summary.get('validity', 0):.1%}, "
            f"novelty {_share(summary.get('novelty'))} (not in the model's training "
            f"set), MOSES filters passed by {summary.get('filters', float('nan')):.1%}; "
            f"FCD {summary.get('fcd', float('nan')):.2f} against 10,000 MOSES test molecules "
            "(lower = closer to real drug-like molecules; two random MOSES samples score ~0.25).")
    if top is not None and len(top):
        best = top.iloc[0]
        lines.append(
            f"The top set (`top_candidates`) holds {len(top)} candidates, one per chemotype "
            f"(at most {top.attrs.get('max_similarity', 0.55):g} Tanimoto to a better one), "
            f"best first: score {best['score']:.3f} = weighted desirability of QED, SA and "
            f"logP (1 = every target met). {summary.get('top_known_skipped', 'An unknown number of')} "
            f"training molecules and {summary.get('top_similar_skipped', 0)} near-duplicates "
            "ranked above its last member were passed over. `nearest_similarity` is each "
            "candidate's Tanimoto to its most similar training molecule (`nearest_known`); "
            "`reasons` names every filter alert that fired.")
    if "opt_best_score" in summary:
        base = summary.get("baseline_best_score")
        auc, base_auc = summary.get("opt_auc_top10"), summary.get("baseline_auc_top10")
        lines.append(
            f"Optimization: best score {summary['opt_best_score']:.3f} in "
            f"{int(summary.get('opt_oracle_calls', 0)):,} oracle calls"
            + (f" (prior sampling at the same budget: {base:.3f})" if base is not None else "")
            + (f"; area under the top-10 curve (PMO) {auc:.3f}" if auc is not None else "")
            + (f" against {base_auc:.3f}" if base_auc is not None else "")
            + (f"; {int(summary['opt_unscorable']):,} molecules the objective could not score"
               if summary.get("opt_unscorable") else "")
            + "; the curves `opt_top10_by_calls` and `baseline_top10_by_calls` (mean of the 10 "
              "best so far, every call) are in the metrics charts.")
    lines.append("Images (top candidates, property distributions, interpolation) are under "
                 "the run's Images/Artifacts; `report.html` is the sortable workbench.")
    return "\n\n".join(lines)


def log_review(tr, out_dir: Path) -> None:
    """Keyed images and stepped curves from a run folder."""
    for rel, key in IMAGES:
        tr.log_image(out_dir / rel, key)
    for table, x, y, metric in CURVES:
        path = out_dir / f"{table}.csv"
        if path.is_file():
            df = pd.read_csv(path)
            if {x, y} <= set(df.columns):
                tr.log_series(metric, df[x].tolist(), df[y].tolist())


def log_folder(tr, cfg: RunConfig, out_dir: Path, summary: dict, name: str,
               model_path: str | Path | None, loaded=None) -> str | None:
    """Everything a finished run folder holds, on the run ``tr``: metrics, files, keyed
    images and curves, the description, the dataset (its first 1,000 rows), and the model
    (its own record as params, registered once per weights). ``loaded``: the model, if the
    caller has it loaded. Returns the registered model version."""
    from molvae.checkpoint import load_model
    from molvae.data import file_digest
    from molvae.tracking import code_version

    model = Path(model_path) if model_path else None
    tr.log_metrics({k: v for k, v in summary.items() if isinstance(v, int | float)})
    tr.log_run_dir(out_dir)
    log_review(tr, out_dir)
    top = out_dir / "top_candidates.csv"
    tr.describe(describe(name, summary, model.name if model else "?",
                         pd.read_csv(top) if top.is_file() else None))
    data = Path(cfg.data.path)
    if data.is_file():
        tr.log_dataset(pd.read_csv(data, nrows=1000), str(data), data.name, file_digest(data))
    if model is None or not model.is_file():
        return None
    loaded = loaded or load_model(model)
    sha = file_digest(model)
    tr.log_params(model_params(loaded))
    tr.set_tags({"model_sha256": sha, "model_file": model.name})
    if not cfg.tracking.registered_model:
        return None
    hashes = loaded.train_hashes  # every stage's molecules; info: the last stage's run only
    trained = (f"{len(hashes):,} distinct" if hashes is not None and len(hashes)
               else f"{(loaded.info or {}).get('train_size', 'unknown')}")
    return tr.log_model(
        model, cfg.tracking.registered_model,
        description=(f"molvae SELFIES VAE ({model.name}, sha256 {sha[:12]}): GRU encoder, "
                     f"autoregressive GRU decoder, latent {loaded.model_config.latent_size}; "
                     f"trained on {trained} molecules. pyfunc "
                     "modes: sample, reconstruct, encode."),
        tags={"model_file": model.name, "code_version": code_version(),
              "latent_size": loaded.model_config.latent_size})


def _share(value) -> str:
    """A share as a percentage; "unknown" where there is none (novelty without hashes)."""
    return "unknown" if value is None or value != value else f"{value:.1%}"


def publish(tables: dict, summary: dict, name: str) -> None:
    """Prefect artifacts: the run's description and headline figures, the top tables."""
    from prefect.artifacts import create_markdown_artifact, create_table_artifact

    text = describe(name, summary, Path(str(summary.get("model", "?"))).name,
                           tables.get("top_candidates"))
    rows = [f"| {label} | {value} |" for label, value in readable(summary).items()]
    table = "\n".join(["| figure | value |", "|---|---|", *rows])
    create_markdown_artifact(f"# molvae {name}\n\n{text}\n\n{table}",
                             key=f"molvae-{name}-summary", description="molvae run summary")
    for key in ("top_candidates", "optimization_candidates", "conditional_candidates"):
        df = tables.get(key)
        if df is not None and len(df):
            top = df.head(20)
            cols = [c for c in ("request", "rank", "smiles", "score", "novel",
                                "nearest_similarity", "qed",
                                "sa", "logp", "plogp", "reasons") if c in top]
            create_table_artifact(top[cols].round(4).to_dict("records"),
                                  key=f"molvae-{name}-top-{key.replace('_', '-')}",
                                  description=f"top {key}")
