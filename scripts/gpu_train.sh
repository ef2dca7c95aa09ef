#!/usr/bin/env bash
# Full-scale training on a lent GPU machine, within 9 minutes, checkpoint under 16 MB in $OUT.
#
# Once, here: scripts/gpu_prepare.sh. Then the device tool's run, from the repository root:
#   command "bash scripts/gpu_train.sh", carry [".whl", "gpu"], timeout_s 600
# Knobs (environment): MINUTES (training time, default 7), EPOCHS (the learning-rate schedule's
# length, default 12), BATCH (default 2048), LR (peak, default 1e-3), INIT (weights to start
# from, default the shipped model; "" = from scratch), EXTRA (more --set options, e.g.
# "--set model.decoder_num_layers=2" with INIT=""), DEVICE (cuda; cpu only to try the script).
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-runs/gpu}
MINUTES=${MINUTES:-7}
EPOCHS=${EPOCHS:-12}
BATCH=${BATCH:-2048}
LR=${LR:-1e-3}
INIT=${INIT-data/model/molvae_moses.pt}
DEVICE=${DEVICE:-cuda}
TOKENS=${TOKENS:-gpu/train_tokens.npz}
PY=${PY:-python3}
if [ -d .whl ] && ls .whl/*.whl >/dev/null 2>&1; then
    "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
        --target /tmp/site .whl/*.whl
    export PYTHONPATH=/tmp/site:$PWD
else
    export PYTHONPATH=$PWD
fi
export PYTHONUNBUFFERED=1 MOLVAE_NO_PROGRESS=1
[ "$DEVICE" = cuda ] && nvidia-smi --query-gpu=name,memory.total --format=csv || true
mkdir -p "$OUT"
args=(--data "$TOKENS" --out "$OUT/run"
      --set train.device="$DEVICE" --set train.epochs="$EPOCHS" --set train.batch_size="$BATCH"
      --set train.lr="$LR" --set train.lr_min=1e-5 --set train.lr_warmup_steps=300
      --set train.beta_schedule=constant --set train.beta_start=0.3 --set train.beta_max=0.3
      --set train.free_bits=0.03 --set train.max_minutes="$MINUTES" --set train.patience=100
      --set train.recon_eval_size=0 --set train.prior_codes=0 --set data.val_fraction=0.01)
[ -n "$INIT" ] && args+=(--init-from "$INIT")
# shellcheck disable=SC2086
"$PY" -m molvae.cli train "${args[@]}" ${EXTRA:-} 2>&1 | tee "$OUT/train.log"
# fp16 weights, no optimizer, no training hashes (the repository ships them apart): < 16 MB
"$PY" -m molvae.cli export "$OUT/run/best.pt" "$OUT/model.pt" --half --hashes-apart
rm -f "$OUT"/train_hashes_*.npy
ls -la "$OUT"
