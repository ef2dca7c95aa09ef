"""The quality dashboard (issue 16): where a model's samples lose fidelity, row by row.

    python benchmarks/model_quality.py [--model data/model/molvae_moses_cvae.pt] [--n 10000]
        [--set generate.top_p=0.9 --set generate.ring_grammar=true ...] [--rows prior,latent]
        [--train data/moses/train.csv.gz] [--json out.json]

Rows (10,000 molecules each by default, FCD against the shipped MOSES test 10k):
  heldout        the held-out molecules themselves (data/moses_test_heldout_10k, random and
                 disjoint from the FCD reference): the floor for two 10k samples
  recon          greedy decoding of their posterior means (reconstruction)
  token_noise    their posterior means, tokens drawn with the sampler's settings
  latent_noise   z ~ q(z|x) of them, greedy tokens
  perfect_prior  z ~ q(z|x) of them, tokens drawn with the sampler's settings
  prior          the sampler itself (`molvae sample` with the [generate] settings): raw samples
  pipeline       the prior row's unique valid molecules that pass the pipeline's default filters
Each row: validity, uniqueness, novelty (copy rate = 1 - novelty), FCD, MOSES filters, share
with a ring of 8+ atoms. Then exact reconstruction of --recon held-out molecules (a
conditional model's given each molecule's own properties, and from the codes alone), the ring-size
histogram of the prior row against the training data, and its most frequent MOSES filter
failures. Sampling settings come from --set generate.* exactly as in `molvae sample`.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections import Counter
from pathlib import Path

import numpy as np
import pandas as pd
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import Steal  # noqa: E402

from molvae import chem, metrics  # noqa: E402
from molvae.candidates import annotate  # noqa: E402
from molvae.checkpoint import load_model  # noqa: E402
from molvae.config import DATA_DIR, SHIPPED_MODEL, SHIPPED_TEST, load_config  # noqa: E402
from molvae.data import read_molecules  # noqa: E402
from molvae.generate import decode_latent, sample, settings  # noqa: E402
from molvae.latent import codes  # noqa: E402

HELDOUT = DATA_DIR / "moses_test_heldout_10k.csv.gz"
ROWS = ("heldout", "recon", "token_noise", "latent_noise", "perfect_prior", "prior", "pipeline")


def ring_sizes(smiles: list[str]) -> tuple[Counter, float]:
    """Histogram of ring sizes (SSSR) over valid molecules, and the share of molecules with a
    ring of 8 or more atoms."""
    hist: Counter = Counter()
    big = n = 0
    for s in smiles:
        mol = chem.to_mol(s)
        if mol is None:
            continue
        sizes = [len(r) for r in mol.GetRingInfo().AtomRings()]
        hist.update(sizes)
        big += any(k >= 8 for k in sizes)
        n += 1
    return hist, big / max(n, 1)


def row_metrics(smiles: list[str], ref: list[str], is_novel, cache: str) -> dict:
    canon = [chem.canonical_smiles(s) or "" for s in smiles]
    valid = [c for c in canon if c]
    rows = metrics.eval_rows(valid, with_fragments=False)
    _, big = ring_sizes(valid)
    return {"n": len(smiles), "validity": len(valid) / max(len(smiles), 1),
            "uniqueness": metrics.uniqueness(valid), "novelty": metrics.novelty(valid, is_novel),
            "fcd": metrics.fcd(valid, ref, cache_dir=cache) if len(valid) > 1 else float("nan"),
            "filters": float(np.mean([r["pass_moses"] for r in rows])) if rows else float("nan"),
            "rings8": big}


def decode(loaded, z: torch.Tensor, cfg, greedy: bool, seed: int) -> list[str]:
    return [smi for _, smi in decode_latent(loaded, z, cfg, greedy=greedy, seed=seed)]


def make_rows(loaded, cfg, wanted: list[str], heldout: list[str], seed: int, n: int) -> dict:
    """SMILES of each wanted row (the pipeline row is derived from the prior row later)."""
    out: dict[str, list[str]] = {}
    if "heldout" in wanted:
        out["heldout"] = heldout[:n]
    if {"recon", "token_noise", "latent_noise", "perfect_prior"} & set(wanted):
        mu, logvar, errors = codes(loaded, heldout[:n], strict=False)
        ok = torch.tensor([e is None for e in errors])
        mu, std = mu[ok], torch.exp(0.5 * logvar[ok])
        gen = torch.Generator().manual_seed(seed)
        z = mu + std * torch.randn(mu.shape, generator=gen)  # one draw of q(z|x) per molecule
        plan = {"recon": (mu, True), "token_noise": (mu, False), "latent_noise": (z, True),
                "perfect_prior": (z, False)}
        for name, (points, greedy) in plan.items():
            if name in wanted:
                out[name] = decode(loaded, points, cfg, greedy, seed)
    if {"prior", "pipeline"} & set(wanted):
        out["prior"] = sample(loaded, cfg, num_samples=n, seed=seed)["smiles"].tolist()
    return out


def novelty_test(train_path: str | None, loaded):
    if train_path and Path(train_path).is_file():
        train = set(pd.read_csv(train_path)["SMILES"])  # MOSES SMILES are RDKit-canonical
        return (lambda xs: np.array([x not in train for x in xs])), train_path
    return loaded.is_novel, "the model's training-set hashes"


def print_table(results: dict) -> None:
    cols = ["validity", "uniqueness", "novelty", "fcd", "filters", "rings8", "n"]
    print(f"{'row':14s}" + "".join(f"{c:>11s}" for c in cols))
    for name, r in results.items():
        cells = "".join(f"{r[c]:>11.4f}" if isinstance(r[c], float) else f"{r[c]:>11}" for c in cols)
        print(f"{name:14s}{cells}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default=str(SHIPPED_MODEL))
    ap.add_argument("--n", type=int, default=10_000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--rows", default=",".join(ROWS), help="comma-separated: " + ",".join(ROWS))
    ap.add_argument("--set", action="append", default=[], metavar="generate.KEY=VALUE")
    ap.add_argument("--train", default="data/moses/train.csv.gz",
                    help="training set for novelty (default: the full MOSES train if fetched)")
    ap.add_argument("--recon", type=int, default=1000, help="held-out molecules reconstructed")
    ap.add_argument("--json", help="write the figures here as JSON")
    args = ap.parse_args()
    wanted = [r for r in args.rows.split(",") if r]
    unknown = sorted(set(wanted) - set(ROWS))
    if unknown:
        ap.error(f"unknown rows {unknown}")
    cfg = settings(load_config(None, args.set).generate)
    loaded = load_model(args.model)
    ref = [chem.canonical_smiles(s) for s in read_molecules(SHIPPED_TEST).smiles]
    heldout = [s for s in read_molecules(HELDOUT).smiles if s]
    is_novel, novelty_ref = novelty_test(args.train, loaded)
    t0 = time.perf_counter()
    with Steal() as steal:
        smiles = make_rows(loaded, cfg, wanted, heldout, args.seed, args.n)
        results = {name: row_metrics(s, ref, is_novel, ".molvae_cache") for name, s in smiles.items()
                   if name in wanted}
        extra = {}
        if "prior" in smiles:
            extra = prior_details(smiles["prior"], loaded, heldout, args)
            if "pipeline" in wanted:
                kept = extra.pop("pipeline_smiles")
                results["pipeline"] = {**row_metrics(kept, ref, is_novel, ".molvae_cache"),
                                       "share_kept": len(kept) / len(smiles["prior"])}
            extra.pop("pipeline_smiles", None)
    print(f"model {args.model}; sampler {cfg.model_dump(exclude={'interpolate', 'neighbors'})}")
    print(f"novelty against {novelty_ref}; {time.perf_counter() - t0:.0f} s; CPU steal {steal.share}")
    print_table(results)
    for key, value in extra.items():
        print(f"{key}: {value}")
    if args.json:
        Path(args.json).write_text(json.dumps({"model": args.model, "seed": args.seed,
                                               "generate": cfg.model_dump(mode="json"),
                                               "rows": results, **extra}, indent=1))


def prior_details(prior: list[str], loaded, heldout: list[str], args) -> dict:
    from molvae.config import ScoreConfig
    from molvae.generate import reconstruct

    valid = [s for s in prior if s]
    hist, _ = ring_sizes(valid)
    train = [s for s in read_molecules(DATA_DIR / "moses_train_100k.csv.gz").smiles[:10_000] if s]
    train_hist, _ = ring_sizes(train)
    failures: Counter = Counter()
    for s in valid:
        failures.update(chem.moses_alerts(chem.to_mol(s)))
    df = annotate(pd.DataFrame({"smiles": prior, "valid": [bool(s) for s in prior]}),
                  ScoreConfig(), loaded)
    kept = df[df["pass_all"] & df["unique"]]["smiles"].tolist()
    rec = reconstruct(loaded, heldout[: args.recon])
    alone = reconstruct(loaded, heldout[: args.recon], code_only=True) if loaded.conditions else rec
    norm = lambda h, n: {k: round(v / n, 4) for k, v in sorted(h.items())}  # noqa: E731
    return {"exact_reconstruction": round(float(rec["exact_match"].mean()), 4),
            "exact_reconstruction_code_only": round(float(alone["exact_match"].mean()), 4),
            "ring_sizes_per_molecule_prior": norm(hist, len(valid)),
            "ring_sizes_per_molecule_train": norm(train_hist, len(train)),
            "moses_failures_top10": {k: round(v / len(valid), 4) for k, v in failures.most_common(10)},
            "pipeline_smiles": kept}


if __name__ == "__main__":
    main()
