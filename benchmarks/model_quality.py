"""Quality of a trained model (issue 3 / 4 targets), as reported in the README.

    python benchmarks/model_quality.py [--model data/model/molvae_moses.pt] [--prior normal]

10,000 prior samples: validity, share with >= 10 heavy atoms, uniqueness, novelty against
MOSES train (the full set when `data/moses/train.csv.gz` exists, else the model's own
training-set hashes), MOSES metrics vs the shipped 10k MOSES test sample (FCD, IntDiv,
filters, ...); exact reconstruction of 1,000 MOSES test molecules; active latent units.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from molvae import metrics
from molvae.checkpoint import load_model
from molvae.config import SHIPPED_MODEL, SHIPPED_TEST
from molvae.data import read_molecules
from molvae.generate import reconstruct, sample
from molvae.latent import codes, resolve_prior

FULL_TRAIN = Path("data/moses/train.csv.gz")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default=str(SHIPPED_MODEL))
    ap.add_argument("--n", type=int, default=10_000)
    ap.add_argument("--recon", type=int, default=1000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--temperature", type=float, default=1.0)
    ap.add_argument("--prior", choices=["auto", "normal", "posterior"], default="auto")
    args = ap.parse_args()
    torch.set_num_threads(2)
    lm = load_model(args.model)
    test = [s for s in read_molecules(SHIPPED_TEST).smiles if s]
    t = time.perf_counter()
    gen = sample(lm, num_samples=args.n, seed=args.seed, temperature=args.temperature, prior=args.prior)
    if FULL_TRAIN.is_file():
        train = set(pd.read_csv(FULL_TRAIN)["SMILES"])  # MOSES SMILES are RDKit-canonical
        is_novel = lambda xs: np.array([x not in train for x in xs])  # noqa: E731
        novelty_ref = str(FULL_TRAIN)
    else:
        is_novel, novelty_ref = lm.is_novel, "model training-set hashes"
    m, gen_rows, _ = metrics.evaluate(gen.smiles.tolist(), test, is_novel,
                                      cache_dir=".molvae_cache")
    rec = reconstruct(lm, test[: args.recon])
    mu, _, _ = codes(lm, test[:2000], strict=False)
    active = int((mu[torch.isfinite(mu).all(1)].var(0) > 0.01).sum())
    out = {"model": args.model, "temperature": args.temperature,
           "prior": resolve_prior(lm, args.prior),
           **{k: round(v, 4) for k, v in m.items()},
           "exact_reconstruction": round(float(rec.exact_match.mean()), 4),
           "active_units": active, "latent_size": lm.model.latent_size,
           "novelty_reference": novelty_ref, "seconds": round(time.perf_counter() - t, 1),
           "mean_heavy_atoms": round(float(np.mean([r["heavy_atoms"] for r in gen_rows
                                                    if r["valid"]])), 2)}
    for k, v in out.items():
        print(f"{k:24s} {v}")
    print(json.dumps(out))


if __name__ == "__main__":
    main()
