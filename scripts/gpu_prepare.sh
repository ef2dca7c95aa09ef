#!/usr/bin/env bash
# Prepare, on this (CPU) machine, what a lent GPU machine needs for scripts/gpu_train.sh:
#   gpu/train_tokens.npz  a random SAMPLE (default 1,000,000) of the MOSES training set as a
#                         compressed token file, in the shipped model's vocabulary, with its
#                         conditions computed (no RDKit there); ~25 MB, so that it travels with
#                         the working tree (64 MiB in all). Takes ~35 min on 2 cores.
#   .whl/                 pure-Python wheels the device image lacks (selfies, pydantic and kin)
# Both are git-ignored; the device `run` carries them: carry = [".whl", "gpu"].
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${BIN:-.venv/bin}
"$BIN/molvae" data fetch moses --dest data/moses
mkdir -p gpu
MODEL=${MODEL:-data/model/molvae_moses_cvae.pt}
CONDITIONS=${CONDITIONS-mw,logp,tpsa,hbd,hba,qed,sa}
SAMPLE=${SAMPLE:-1000000}
SRC=.molvae_cache/moses_train_sample_$SAMPLE.csv.gz  # not in gpu/: that folder travels
"$BIN/molvae" data sample data/moses/train.csv.gz "$SRC" -n "$SAMPLE" --seed 15
"$BIN/molvae" data prepare "$SRC" --vocab-of "$MODEL" \
    --properties "$CONDITIONS" --export gpu/train_tokens.npz
rm -rf .whl && mkdir -p .whl
# The device's python3 is 3.12 with torch, numpy, pandas, tqdm; these are missing there.
"$BIN/python" -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 \
    --implementation cp --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 \
    --platform manylinux2014_x86_64 -d .whl \
    "selfies>=2.1,<3" "pydantic>=2.5,<3" pydantic-core annotated-types typing-inspection \
    "typing-extensions>=4.16"
du -sh gpu .whl
