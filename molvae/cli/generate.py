"""Commands that read a trained model: sample, prior, interpolate, neighbors, reconstruct,
encode. Settings with a [generate] config key reach it through the flag table of each
command (see ``common.load_run_config``)."""

from __future__ import annotations

import argparse
import sys
import time

from molvae.errors import DataError

from .common import (
    UsageError,
    add_config_options,
    add_model_option,
    add_smiles_column_option,
    check_output,
    copy_companions,
    load_model,
    load_run_config,
    progress_bar,
    read_input,
    read_smiles,
    refuse_shipped,
    seed,
    with_input_columns,
    write_table,
)

SAMPLE_DEFAULTS = {"generate.num_samples": 1000}  # a quick look; `molvae run` draws 10,000


def add_generate_commands(sub: argparse._SubParsersAction) -> None:
    for add in (add_sample_command, add_prior_command, add_interpolate_command,
                add_neighbors_command, add_reconstruct_command, add_encode_command):
        add(sub)


def add_sample_command(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("sample", help="sample molecules from the prior")
    add_config_options(parser)
    parser.add_argument("-n", type=int, help="molecules (generate.num_samples; default 1000)")
    parser.add_argument("-o", "--out", help="CSV or Parquet (default samples.csv)")
    add_model_option(parser)
    parser.add_argument("--seed", type=seed, help="generate.seed (default 0)")
    parser.add_argument("--temperature", type=float, help="> 0 (generate.temperature; default 1)")
    parser.add_argument("--greedy", action=argparse.BooleanOptionalAction, default=None,
                        help="greedy tokens, or --no-greedy to draw them (generate.greedy; "
                             "default: drawn with --temperature other than 1 or --top-p, "
                             "else the model's stored choice)")
    parser.add_argument("--top-p", type=float, help="nucleus sampling: draw each token from the "
                        "smallest set holding this much probability (generate.top_p; 0 < p <= 1)")
    parser.add_argument("--refine", type=int,
                        help="refinement passes: each molecule encoded and decoded again, "
                             "0 = off: a model with sampler weights (the shipped one) then "
                             "writes with them, refinement distilled, ~4x faster "
                             "(generate.refine; default: the model's stored choice)")
    parser.add_argument("--ring-grammar", action=argparse.BooleanOptionalAction, default=None,
                        help="never close a ring of a size the training data lacks "
                             "(generate.ring_grammar; default: on when the model stores its "
                             "training ring sizes)")
    parser.add_argument("--unique", action="store_true", default=None,
                        help="keep going until N unique valid (generate.unique)")
    parser.add_argument("--batch-size", type=int, help="generate.batch_size (default 1000)")
    parser.add_argument("--max-length", type=int, help="generate.max_length (default 100)")
    parser.add_argument("--prior", choices=["auto", "normal", "posterior"],
                        help="z from N(0, I), or from the training codes stored in the model "
                             "(posterior); auto = posterior when the model has them (generate.prior)")
    parser.add_argument("--prior-width", type=float,
                        help="scale of the posterior spreads (generate.prior_width; default: the "
                             "model's stored width, with --condition its width for requests)")
    parser.add_argument("--condition", nargs="+", action="extend", metavar="NAME=VALUE",
                        help="a conditional model: requested properties, a value or a range, "
                             "e.g. --condition logp=2:3 tpsa=70 mw=350 (generate.condition)")
    parser.add_argument("--guidance", type=float,
                        help="with --condition: classifier-free guidance, > 1 pushes harder "
                             "towards the condition, < 1 trusts the drawn code more (the shipped "
                             "model: 0.7 a closer hit, fewer novel molecules; docs/conditional.md) "
                             "(generate.condition_guidance; default: the model's stored choice, "
                             "else 1)")
    parser.add_argument("--draws", type=int, metavar="K",
                        help="with --condition: decode K molecules for each one returned and "
                             "keep the one nearest the request by its RDKit properties "
                             "(generate.condition_draws, 1-64; default 4; 1 = the model's own "
                             "answer)")
    parser.add_argument("--steer", type=float, metavar="S",
                        help="with --condition: steer each token towards the request by the "
                             "model's steering head (`molvae steer`), strength 0-100, 0 off "
                             "(generate.condition_steer; default: the model's stored strength)")
    parser.set_defaults(func=cmd_sample)


def cmd_sample(args: argparse.Namespace) -> None:
    from molvae import candidates
    from molvae.conditions import parse_targets
    from molvae.generate import request, sample, uses_width
    from molvae.steering import uses_steer

    out = check_output(args.out, default="samples.csv")
    cfg = load_run_config(args, {
        "generate.num_samples": args.n,
        "generate.seed": args.seed,
        "generate.temperature": args.temperature,
        "generate.greedy": args.greedy,
        "generate.top_p": args.top_p,
        "generate.refine": args.refine,
        "generate.ring_grammar": args.ring_grammar,
        "generate.unique": args.unique,
        "generate.batch_size": args.batch_size,
        "generate.max_length": args.max_length,
        "generate.prior": args.prior,
        "generate.prior_width": args.prior_width,
        "generate.condition": parse_targets(args.condition) if args.condition else None,
        "generate.condition_guidance": args.guidance,
        "generate.condition_draws": args.draws,
        "generate.condition_steer": args.steer,
    }, defaults=SAMPLE_DEFAULTS)
    for flag, value, what in (("--guidance", args.guidance, "guides the decoder to"),
                              ("--draws", args.draws, "keeps the draw nearest"),
                              ("--steer", args.steer, "steers the decoder to")):
        if value is not None and not cfg.generate.condition:  # nor one from the config
            raise UsageError(f"{flag} goes with --condition (it {what} a request)")
    t0 = time.perf_counter()
    _check_score(cfg)
    loaded = load_model(args, cfg)
    # fail before the progress bar appears
    candidates.check_novelty(cfg.score, loaded)  # the novelty filter needs the hashes
    uses_width(loaded, cfg.generate)  # a width that would change nothing fails here
    _request_notes(loaded, cfg.generate.condition)  # first: a model without conditions
    uses_steer(loaded, cfg.generate)  # steering asked of a model without a steering head
    print(sampler_text(loaded, cfg.generate), file=sys.stderr)
    bar = progress_bar(cfg.generate.num_samples, "sample")
    df = sample(loaded, cfg.generate, progress=bar.update)
    bar.close()
    times = {"sample": time.perf_counter() - t0}
    cut = int((df.selfies.str.count(r"\[") >= cfg.generate.max_length).sum())
    if cut:  # SELFIES decode any prefix: a cut molecule is valid, and not what was written
        print(f"note: {cut:,} of {len(df):,} molecules reached --max-length "
              f"({cfg.generate.max_length} tokens) and end where it cut them", file=sys.stderr)
    df = annotate(df, cfg, loaded, times)
    path = write_table(df, out, "samples.csv")
    novel = (f"{(df.novel & df.unique).sum() / max(df.unique.sum(), 1):.2%} of unique"
             if loaded.novelty_test() else "unknown (no training-set hashes)")
    print(f"{len(df)} molecules -> {path}: valid {df.valid.mean():.2%}, unique "
          f"{df.unique.sum() / max(df.valid.sum(), 1):.2%}, novel {novel}")
    if cfg.generate.condition:
        from molvae.conditions import summary

        print(summary(df, request(loaded, cfg.generate.condition)))
    print("seconds: " + ", ".join(f"{k} {v:.1f}" for k, v in times.items())
          + f"; total {time.perf_counter() - t0:.1f}", file=sys.stderr)


def _request_notes(loaded, condition: dict) -> None:
    """A request checked (a model without conditions fails here), with a note for a range cut
    to what the training data covers and for one few training molecules meet."""
    from molvae.conditions import support_note
    from molvae.generate import request

    ranges = request(loaded, condition)
    asked_as = {loaded.conditions.name_of(k): v for k, v in condition.items()}
    for name, (lo, hi) in ranges.items():
        asked = asked_as[name]
        if (lo, hi) != ((asked, asked) if isinstance(asked, (int, float)) else tuple(asked)):
            print(f"note: {name} range cut to {lo:g}:{hi:g}, the part of it the training data "
                  "covers", file=sys.stderr)
    if note := support_note(loaded, ranges):
        print(f"note: {note}", file=sys.stderr)


def sampler_text(loaded, g) -> str:
    """The sampler ``g`` (a GenerateConfig) amounts to with ``loaded``'s stored defaults:
    "sampler: stored codes at width 1.3, greedy tokens, ring grammar, 10 refinement passes"."""
    from molvae import generate
    from molvae.latent import resolve_prior
    from molvae.steering import steered

    if resolve_prior(loaded, g.prior) == "posterior":
        parts = [f"stored codes at width {generate.uses_width(loaded, g) or loaded.prior['width']:g}"]
    else:
        parts = ["z ~ N(0, I)"]
    if generate.uses_greedy(loaded, g):
        parts.append("greedy tokens")
    else:
        parts.append(f"tokens drawn at temperature {g.temperature:g}"
                     + (f", top-p {g.top_p:g}" if g.top_p else ""))
    if generate.uses_ring_grammar(loaded, g):
        parts.append("ring grammar")
    if passes := generate.uses_refine(loaded, g):
        parts.append(f"{passes} refinement pass{'es' if passes > 1 else ''}")
    elif loaded.model_config.sample_flag and not g.condition:
        parts.append("the decoder's sampler weights (refinement distilled)")
    if g.condition:
        parts.append(f"guidance {generate.uses_guidance(loaded, g):g}")
        if (steering := steered(loaded, g, None)) is not None:  # a property its head predicts
            parts.append(f"steered at strength {steering.strength:g}")
        if (k := generate.uses_draws(g, generate.request(loaded, g.condition))) > 1:
            parts.append(f"the nearest of {k} decoded molecules by RDKit properties")
    return "sampler: " + ", ".join(parts)


def _check_score(cfg) -> None:
    from molvae.candidates import check_score_config

    check_score_config(cfg.score)


def annotate(df, cfg, loaded, times: dict | None = None):
    """Properties, filters, scores and (``score.known_molecules``) each molecule's nearest
    known molecule, with progress bars; each stage's seconds into ``times``."""
    from molvae import candidates

    times = {} if times is None else times
    t = time.perf_counter()
    bar = progress_bar(len(df), "score")
    out = candidates.annotate(df, cfg.score, loaded, progress=bar.update)
    bar.close()
    times["score"] = time.perf_counter() - t
    if cfg.score.known_molecules:
        t = time.perf_counter()
        index = candidates.known_index(str(cfg.score.known_molecules),
                                       cfg.score.known_smiles_column, str(cfg.data.cache_dir))
        out = candidates.add_nearest(out, index, workers=cfg.score.workers)
        times["nearest"] = time.perf_counter() - t
    return out


def add_prior_command(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("prior", help="store training codes in a model as its sampling prior")
    parser.add_argument("data", help="the model's training molecules (CSV/TSV/SMI, .gz)")
    parser.add_argument("-n", type=int, default=16384, help="codes to keep (default 16384)")
    parser.add_argument("--seed", type=seed, default=0)
    parser.add_argument("--width", type=float,
                        help="scale of the posterior spreads sampling uses (default: the model's "
                             "stored width, else 1; wider: fewer copies of training molecules)")
    add_smiles_column_option(parser)
    add_model_option(parser, " (changed in place unless -o; a shipped model needs -o)")
    parser.add_argument("-o", "--out", help="write the model with codes here instead (.pt)")
    parser.set_defaults(func=cmd_prior)


def cmd_prior(args: argparse.Namespace) -> None:
    from molvae.checkpoint import store_prior
    from molvae.latent import fit_prior

    loaded = load_model(args)
    out = check_output(str(loaded.path) if args.out is None else args.out, (".pt",))  # in place too
    refuse_shipped(out, "it with your codes")  # in place, or -o naming a shipped model
    width = args.width if args.width is not None else (loaded.prior or {}).get("width", 1.0)
    smiles = read_smiles(args.data, args.smiles_column)
    prior = fit_prior(loaded, smiles, args.n, args.seed, width=width)
    path = store_prior(loaded.path, prior, args.out)
    copy_companions(loaded.path, path)
    print(f"stored {len(prior['mu'])} posterior codes (width {width:g}) of {args.data} "
          f"in {path}; `molvae sample --model {path}` draws from them (--prior normal for "
          "N(0, I))")


def add_interpolate_command(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("interpolate", help="decode the latent path through 2+ molecules")
    add_config_options(parser)
    parser.add_argument("molecules", nargs="+", metavar="SMILES")
    parser.add_argument("--steps", type=int, help="points per segment (generate.interpolation_steps; "
                        "default 10)")
    parser.add_argument("--method", choices=["linear", "slerp"], default="linear",
                        help="straight lines between codes, or great circles (default linear)")
    parser.add_argument("-o", "--out", help=".csv or .parquet (default interpolation.csv)")
    parser.add_argument("--image", help="PNG strip of the path")
    parser.add_argument("--code-only", action="store_true",
                        help="a conditional model walks from the codes alone, without the "
                             "molecules' own properties as its condition input")
    add_model_option(parser)
    parser.set_defaults(func=cmd_interpolate)


def cmd_interpolate(args: argparse.Namespace) -> None:
    from molvae.walks import interpolate

    if len(args.molecules) < 2:  # before the model loads
        raise UsageError("interpolation needs at least two molecules")
    out = check_output(args.out, default="interpolation.csv")
    check_output(args.image, (".png",))
    cfg = load_run_config(args, {"generate.interpolation_steps": args.steps})
    _check_score(cfg)
    loaded = load_model(args, cfg)
    steps = cfg.generate.interpolation_steps
    bar = progress_bar(steps * (len(args.molecules) - 1), "interpolate")
    df = interpolate(loaded, args.molecules, steps, args.method, cfg.generate.max_length,
                     code_only=args.code_only, progress=bar.update)
    bar.close()
    df = annotate(df, cfg, loaded)
    path = write_table(df, out, "interpolation.csv")
    if args.image:
        from molvae.report import interpolation_strips

        interpolation_strips(df, args.image, args.molecules)
        path = f"{path}, {args.image}"
    print("segment\tt\tsmiles")
    for _, r in df.iterrows():
        print(f"{int(r.segment)}\t{r.t:.2f}\t{r.smiles}")
    ends = [df[df.segment == k].iloc[0] for k in range(len(args.molecules) - 1)]
    _note_unreproduced(args.molecules, [*[r.smiles for r in ends], df.iloc[-1].smiles])
    print(f"-> {path}", file=sys.stderr)


def _note_unreproduced(molecules: list[str], decoded: list[str]) -> None:
    """A line on stderr for each given molecule whose code the model decodes to another."""
    from molvae.chem import bulk_tanimoto, canonical_smiles

    said = set()
    for smi, got in zip(molecules, decoded, strict=True):
        if canonical_smiles(smi) != got and (smi, got) not in said:  # once for a repeated one
            said.add((smi, got))
            sim = bulk_tanimoto(smi, [got])[0] if got else 0.0
            print(f"note: the model writes {smi}'s code as {got or 'nothing valid'} (similarity "
                  f"{sim:.2f}): the walk has that molecule where {smi} was asked", file=sys.stderr)


def add_neighbors_command(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("neighbors", help="analogues around one molecule's latent code")
    add_config_options(parser)
    parser.add_argument("smiles")
    parser.add_argument("--radii", type=float, nargs="+",
                        help="noise scales (generate.neighbor_radii; default 0.1 0.25 0.5)")
    parser.add_argument("--per-radius", type=int, help="generate.neighbors_per_radius (default 20)")
    parser.add_argument("--seed", type=seed, help="generate.seed (default 0)")
    parser.add_argument("--code-only", action="store_true",
                        help="a conditional model walks from the codes alone, without the "
                             "molecules' own properties as its condition input")
    parser.add_argument("-o", "--out", help=".csv or .parquet (default neighbors.csv)")
    add_model_option(parser)
    parser.set_defaults(func=cmd_neighbors)


def cmd_neighbors(args: argparse.Namespace) -> None:
    from molvae.walks import neighbors

    out = check_output(args.out, default="neighbors.csv")
    cfg = load_run_config(args, {
        "generate.neighbor_radii": args.radii,
        "generate.neighbors_per_radius": args.per_radius,
        "generate.seed": args.seed,
    })
    g = cfg.generate
    _check_score(cfg)
    loaded = load_model(args, cfg)
    bar = progress_bar(len(g.neighbor_radii) * g.neighbors_per_radius, "neighbors")
    df = neighbors(loaded, args.smiles, g.neighbor_radii, g.neighbors_per_radius, g.seed,
                   g.max_length, code_only=args.code_only, progress=bar.update)
    bar.close()
    center = df.attrs["center_decoded"]
    df = annotate(df, cfg, loaded)
    path = write_table(df, out, "neighbors.csv")
    _note_unreproduced([args.smiles], [center])
    for r, group in df.groupby("radius"):
        print(f"radius {r}: {group.valid.sum()} valid, {group.smiles[group.valid].nunique()} "
              f"distinct, mean similarity {group.similarity.mean():.3f}")
    print(f"-> {path}", file=sys.stderr)


def add_reconstruct_command(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("reconstruct", help="encode and greedily decode molecules")
    parser.add_argument("file")
    parser.add_argument("-o", "--out", help=".csv or .parquet (default reconstructed.csv)")
    add_smiles_column_option(parser)
    parser.add_argument("--code-only", action="store_true",
                        help="a conditional model decodes from the code alone, without each "
                             "molecule's own properties as its condition input")
    add_model_option(parser)
    parser.set_defaults(func=cmd_reconstruct)


def cmd_reconstruct(args: argparse.Namespace) -> None:
    from molvae.generate import reconstruct

    out = check_output(args.out, default="reconstructed.csv", source=args.file)
    smiles, others = read_input(args.file, args.smiles_column)
    loaded = load_model(args)
    bar = progress_bar(len(smiles), "reconstruct")
    df = reconstruct(loaded, smiles, progress=bar.update, code_only=args.code_only)
    bar.close()
    ok = df.error == ""
    if not ok.any():
        raise DataError(f"{args.file}: none of its {len(df)} molecules can be reconstructed "
                        f"(first: {df.error.iloc[0]})")
    path = write_table(with_input_columns(df, others), out, "reconstructed.csv")
    how = (" given their own properties" if df.attrs["own_condition"]
           else " from the codes alone" if loaded.conditions is not None else "")
    print(f"exact reconstruction{how} {df.exact_match[ok].mean():.2%} of {int(ok.sum())} "
          f"molecules ({len(df) - int(ok.sum())} more could not be encoded or are too long; "
          f"see the error column) -> {path}")


def add_encode_command(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("encode", help="latent means/variances, ELBO and ood_score (-ELBO: "
                                              "higher = more unusual) per molecule")
    parser.add_argument("file")
    parser.add_argument("-o", "--out", default="latent.parquet",
                        help=".parquet (default latent.parquet), .csv, .csv.gz or .npz")
    add_smiles_column_option(parser)
    add_model_option(parser)
    parser.set_defaults(func=cmd_encode)


def cmd_encode(args: argparse.Namespace) -> None:
    from molvae.latent import code_table

    check_output(args.out, (".parquet", ".csv", ".csv.gz", ".npz"), source=args.file)
    smiles, others = read_input(args.file, args.smiles_column)
    loaded = load_model(args)
    bar = progress_bar(len(smiles), "encode")
    df = code_table(loaded, smiles, progress=bar.update)
    bar.close()
    if not (df.error == "").any():
        raise DataError(f"{args.file}: none of its {len(df)} molecules can be encoded "
                        f"(first: {df.error.iloc[0]})")
    if args.out.lower().endswith(".npz"):
        _write_npz(df, args.out)
    else:
        write_table(with_input_columns(df, others), args.out, args.out)
    print(f"encoded {int((df.error == '').sum())} of {len(df)} molecules -> {args.out} "
          f"(median ELBO {df.elbo.median():.2f}; higher ood_score = more unusual)")


def _write_npz(df, out: str) -> None:
    import numpy as np

    from molvae.files import atomic_path

    with atomic_path(out) as tmp, open(tmp, "wb") as fh:  # a file: np.savez adds no .npz
        np.savez(fh, mu=df.filter(like="mu_").to_numpy(np.float32),
                 var=df.filter(like="var_").to_numpy(np.float32),
                 elbo=df.elbo.to_numpy(), smiles=np.array(df.smiles, dtype=str))  # no pickle
