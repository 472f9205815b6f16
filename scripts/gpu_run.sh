#!/usr/bin/env bash
# One prepared call per lent-GPU window (issue 19). Each stage is one command under the 600 s a command may
# run; it writes JSON under $OUT/<stage>/ and prints a markdown table (scripts/gpu_report.py). Every step
# runs under its own `timeout`; a failed or timed-out step is recorded ($OUT/<stage>/steps.jsonl, then
# summary.json) and the next step still runs: no `set -e` that loses the window.
#
#   bash scripts/gpu_run.sh reading   # scripts/gpu_demo.sh pretrain with its env knobs (AR_*), <= READING_TIMEOUT
#   bash scripts/gpu_run.sh speed     # < 200 s: S2 Pro-shape decode (B 1/8/64), parity + sampled replay, MFU
#   bash scripts/gpu_run.sh codec     # profiler window of 10 GAN batches, then a time-boxed GAN fine-tune
#   DRY=1 bash scripts/gpu_run.sh speed   # (or: gpu_run.sh speed --dry) same steps on the CPU, tiny sizes
#
# Speed, in order, inside SPEED_BUDGET (180 s of step timeouts, 15 of them for the wheels; + 10 s for the
# report, worst case ~195 s with the kill grace):
#   1. the S2 Pro-shape cached-decode benchmark at batch 1/8/64 (55 s; random bf16 weights: frames/s,
#      ms/frame, RTF at 21.5 frames/s, TTFA, peak memory, MBU);
#   2. greedy CUDA-graph parity against eager (fp32, bf16; tiny and reference shapes) and seeded sampled
#      replay (30 s);
#   3. the training MFU at s2pro width (scripts/bench_train.py, 35 s);
#   4. the same parity checks for torch.compile (fp32) in the rest of the budget (45 s): its compile time is
#      the unknown, so it runs last and cannot starve the others.
# Codec: scripts/profile_codec.py, then scripts/gpu_demo.sh codec from CODEC_INIT (needs data/gpu_codec;
# skipped without it).
#
# Carry (scripts/gpu_prepare.sh builds and sizes it): .whl (wheels the image lacks + COMMIT, the commit that
# the JSON records); reading: its codes and tokenizer dirs; codec: data/gpu_codec.
# Knobs (env): OUT (gpu_out), PYTHON (python3), DRY, GIT_COMMIT, READING_TIMEOUT (560), CODEC_SECONDS (270),
# GAN_AFTER (0: the shipped codec is past its mel-only phase), CODEC_INIT (checkpoints/demo/codec), and every
# knob of scripts/gpu_demo.sh (passed through). Files over 15 MiB under $OUT are split into .part-* pieces
# (the device tool returns files up to 16 MiB): `cat f.part-* > f` puts one back together.
set -o pipefail
STAGE=""
DRY=${DRY:-0}
for arg in "$@"; do
  case $arg in
  --dry) DRY=1 ;;
  reading | speed | codec) STAGE=$arg ;;
  *)
    echo "usage: gpu_run.sh reading|speed|codec [--dry]" >&2
    exit 2
    ;;
  esac
done
[ -n "$STAGE" ] || {
  echo "usage: gpu_run.sh reading|speed|codec [--dry]" >&2
  exit 2
}
cd "$(dirname "$0")/.." || exit 2
ROOT=$(pwd)
PY=${PYTHON:-python3}
OUT=${OUT:-gpu_out}
DIR=$OUT/$STAGE
rm -rf "$DIR"
mkdir -p "$DIR"
export PYTHONPATH=$ROOT${PYTHONPATH:+:$PYTHONPATH}
export PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 WANDB_MODE=offline TOKENIZERS_PARALLELISM=false
if [ "$DRY" = 1 ]; then
  export CUDA_VISIBLE_DEVICES=""  # the CPU path even on a GPU machine
  DEVICE=cpu
else
  DEVICE=cuda
fi
START=$(date +%s)

record() { # record NAME STATUS RC SECONDS TIMEOUT_S
  printf '{"step": "%s", "status": "%s", "rc": %d, "seconds": %s, "timeout_s": %d}\n' "$@" >>"$DIR/steps.jsonl"
}

step() { # step NAME TIMEOUT_S CMD...: run CMD under timeout (log: $DIR/NAME.log), record how it ended
  local name=$1 limit=$2 t0 t1 rc status
  shift 2
  echo "== $name (timeout ${limit} s, $(($(date +%s) - START)) s into the stage)"
  t0=$(date +%s.%N)
  timeout -k 2 "$limit" "$@" 2>&1 | tee "$DIR/$name.log"
  rc=${PIPESTATUS[0]}
  t1=$(date +%s.%N)
  case $rc in
  0) status=ok ;;
  124 | 137) status=timeout ;;
  *) status=failed ;;
  esac
  record "$name" "$status" "$rc" "$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.1f", b - a }')" "$limit"
  echo "== $name: $status (rc $rc)"
}

skip() { # skip NAME WHY [TIMEOUT_S reserved for it]
  echo "== $1: skipped ($2)"
  record "$1" skipped 0 0 "${3:-0}"
}

wheels() { # the wheels the image lacks, into /tmp/site (as scripts/gpu_demo.sh does); a step of its own
  if $PY -c "import hydra, omegaconf, datasets, soundfile" 2>/dev/null; then
    skip wheels "imports present" 15
  elif ! ls .whl/*.whl >/dev/null 2>&1; then
    skip wheels "no .whl/ carried" 15
  else
    step wheels 15 "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
      --target /tmp/site .whl/*.whl
    export PYTHONPATH=/tmp/site:$PYTHONPATH
  fi
}

split_large() { # files over 15 MiB under $DIR -> .part-* pieces under the device tool's 16 MiB per file
  find "$DIR" -type f -size +15M ! -name '*.part-*' | while read -r f; do
    split -b 15M -d "$f" "$f.part-" && rm -f "$f" && echo "split $f into $(ls "$f".part-* | wc -l) parts"
  done
}

report() {
  timeout -k 2 10 "$PY" scripts/gpu_report.py "$DIR" --stage "$STAGE" --dry "$DRY" || echo "gpu_report failed (rc $?)"
}

command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader

case $STAGE in
speed)
  wheels
  if [ "$DRY" = 1 ]; then
    bench=(--shapes tiny --device cpu --batches 1 2 --frames 6 --prompt-len 8 --ttfa-ref-frames 8 --ttfa-text 4
      --ttfa-chunk 2 --ttfa-repeats 1)
    parity=(--device cpu --modes eager --frames 4)
    parity_compile=(--device cpu --modes eager --frames 4) # CPU inductor compiles take minutes
    train=(--size tiny --device cpu --dtype fp32 --batch-size 2 --frames 8 --steps 1 --warmup 1)
  else
    bench=(--shapes s2pro --device cuda --batches 1 8 64 --frames 150 --prompt-len 60)
    parity=(--device cuda --modes cudagraph)
    parity_compile=(--device cuda --modes compile)
    train=(--size s2pro --set n_layers=8 --device cuda --dtype bf16 --batch-size 4 --frames 400 --steps 5 --warmup 2)
  fi
  step bench_s2pro 55 "$PY" scripts/bench_inference.py "${bench[@]}" --no-naive --json "$DIR/bench_s2pro.json"
  step parity 30 "$PY" scripts/bench_inference.py --parity "${parity[@]}" --json "$DIR/parity.json"
  # s2pro width with 8 slow layers: full depth does not fit one GPU with AdamW
  step train_mfu 35 "$PY" scripts/bench_train.py "${train[@]}" --json "$DIR/train_mfu.json"
  left=$((${SPEED_BUDGET:-180} - $(awk '{ sub(/.*"timeout_s": /, ""); sub(/}/, ""); s += $1 } END { print s + 0 }' "$DIR/steps.jsonl")))
  if [ "$left" -ge 20 ]; then
    step parity_compile "$left" "$PY" scripts/bench_inference.py --parity "${parity_compile[@]}" \
      --json "$DIR/parity_compile.json"
  else
    skip parity_compile "only ${left} s of the budget left"
  fi
  ;;
codec)
  wheels
  if [ "$DRY" = 1 ]; then
    prof=(--codec-config configs/codec/tiny.yaml --device cpu --batch 2 --crop 0.1 --mel-batches 2 --warmup 2
      --batches 1)
  else
    prof=(--codec-dir "${CODEC_INIT:-checkpoints/demo/codec}" --device cuda --batch "${CODEC_BATCH:-64}" --crop 1.0
      --mel-batches 5 --warmup 5 --batches 10 --trace)
  fi
  step codec_profile 120 "$PY" scripts/profile_codec.py "${prof[@]}" --out "$DIR"
  secs=${CODEC_SECONDS:-270}
  dry=()
  [ "$DRY" = 1 ] && secs=5 && dry=(TRAINER=cpu CODEC_BATCH=2 WORKERS=0)
  if [ ! -f data/gpu_codec/manifest.jsonl ]; then
    skip codec_finetune "no data/gpu_codec/manifest.jsonl (carry it)" $((secs + 120))
  else
    step codec_finetune $((secs + 120)) env OUT="$DIR/finetune" PYTHON="$PY" \
      CODEC_INIT="${CODEC_INIT:-checkpoints/demo/codec}" GAN_AFTER="${GAN_AFTER:-0}" CODEC_SECONDS="$secs" \
      "${dry[@]}" bash scripts/gpu_demo.sh codec
  fi
  ;;
reading)
  # gpu_demo.sh installs the wheels itself; everything else comes from the caller's environment (AR_*, ...).
  dry=()
  if [ "$DRY" = 1 ]; then # random codes in gpu_demo's layout (8 x 1024), a tokenizer trained on their texts
    step dry_codes 60 "$PY" -c "from s2train.data.codes import write_synthetic_codes as w
w('$DIR/dry_codes', num_items=24, num_codebooks=8, codebook_size=1024)"
    dry=(TRAINER=cpu PRECISION=32-true AR_CODES="$DIR/dry_codes" AR_TOKENIZER="$DIR/dry_tokenizer" AR_STEPS=2
      AR_BATCH=4 WORKERS=0)
  fi
  step reading "${READING_TIMEOUT:-560}" env OUT="$DIR" PYTHON="$PY" "${dry[@]}" bash scripts/gpu_demo.sh pretrain
  ;;
esac
split_large
report
echo "gpu_run $STAGE: done in $(($(date +%s) - START)) s; results in $DIR"
! grep -q '"status": "\(failed\|timeout\)"' "$DIR/steps.jsonl"
