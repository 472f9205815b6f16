#!/usr/bin/env bash
# The demo pipeline: prepare -> codec -> encode -> pretrain -> lora -> grpo -> eval -> compare.
# Each stage writes into $WORK (default data/demo_run) and is skipped when its output exists, so a killed
# run resumes where it stopped. The shipped checkpoints in checkpoints/demo/ are used when present;
# FULL=1 retrains the codec and the base Dual-AR from scratch instead (hours on CPU: use a GPU).
#
#   bash recipes/demo/run.sh                     # default path
#   FULL=1 TRAINER=gpu bash recipes/demo/run.sh  # retrain everything on a GPU
#   SIZE=tiny bash recipes/demo/run.sh           # a smoke run in a few minutes (numbers meaningless)
set -euo pipefail
cd "$(dirname "$0")/../.."

PY="${PY:-.venv/bin/python}"
SIZE="${SIZE:-small}"                 # corpus size: tiny | small | large
WORK="${WORK:-data/demo_run}"
TRAINER="${TRAINER:-cpu}"
FULL="${FULL:-0}"
SHIPPED="${SHIPPED:-checkpoints/demo}"
CODEC_STEPS="${CODEC_STEPS:-3000}"    # only when the codec is (re)trained here
PRETRAIN_STEPS="${PRETRAIN_STEPS:-3000}"
LORA_STEPS="${LORA_STEPS:-200}"
GRPO_STEPS="${GRPO_STEPS:-30}"
CODEC_SIZE="${CODEC_SIZE:-demo}"
MODEL_SIZE="${MODEL_SIZE:-demo}"
if [[ "$SIZE" == tiny ]]; then
  CODEC_SIZE=tiny MODEL_SIZE=tiny CODEC_STEPS=${CODEC_STEPS_TINY:-20} PRETRAIN_STEPS=${PRETRAIN_STEPS_TINY:-20}
  LORA_STEPS=${LORA_STEPS_TINY:-5} GRPO_STEPS=${GRPO_STEPS_TINY:-2}
fi
HELDOUT="$($PY -c 'from s2train.data.demo import HELDOUT_SPEAKER; print(HELDOUT_SPEAKER)')"
mkdir -p "$WORK/times"
COMMON=(trainer="$TRAINER" paths.data_dir="$WORK" paths.log_dir="$WORK/outputs")

stage() {  # stage NAME OUTPUT CMD... : run CMD unless OUTPUT exists; record the wall time
  local name="$1" out="$2"; shift 2
  if [[ -e "$out" ]]; then echo "[demo] stage $name: done already ($out)"; return; fi
  echo "[demo] stage $name: $*"
  local t0=$SECONDS
  "$@"
  echo "$((SECONDS - t0))" > "$WORK/times/$name"
  [[ -e "$out" ]] || { echo "[demo] stage $name finished without writing $out" >&2; exit 1; }
  echo "[demo] stage $name: $((SECONDS - t0)) s -> $out"
}

export_of() {  # newest run's export dir of a task
  ls -dt "$WORK/outputs/$1"/runs/*/export 2>/dev/null | head -1
}

link_export() {  # link_export TASK DEST: make DEST point at the task's newest export
  local src; src="$(export_of "$1")"
  [[ -n "$src" ]] || { echo "[demo] no export found for task $1" >&2; exit 1; }
  ln -sfn "$(realpath "$src")" "$2"
}

# 1. Corpus.
stage prepare "$WORK/demo/manifest.jsonl" \
  $PY -m s2train.data.demo out="$WORK/demo" size="$SIZE" seed=0

# 2. Codec: shipped, or trained here.
if [[ "$FULL" != 1 && -f "$SHIPPED/codec/config.json" ]]; then
  ln -sfn "$(realpath "$SHIPPED/codec")" "$WORK/codec"
else
  stage codec "$WORK/codec" bash -c "$PY train.py recipe=codec codec=$CODEC_SIZE ${COMMON[*]} \
      trainer.max_steps=$CODEC_STEPS logger=csv && $(declare -f export_of link_export); WORK=$WORK; \
      link_export codec $WORK/codec"
fi

# 3. Codes of the whole corpus through the codec.
stage encode "$WORK/demo/codes" \
  $PY -m s2train.data.encode codec="$WORK/codec" manifest="$WORK/demo/manifest.jsonl" out="$WORK/demo/codes"

# 4. Base Dual-AR: shipped, or pre-trained here.
if [[ "$FULL" != 1 && -f "$SHIPPED/dualar/config.json" ]]; then
  ln -sfn "$(realpath "$SHIPPED/dualar")" "$WORK/base"
else
  stage pretrain "$WORK/base" bash -c "$PY train.py recipe=pretrain model=$MODEL_SIZE codec=$CODEC_SIZE \
      ${COMMON[*]} module.codec_dir=$WORK/codec trainer.max_steps=$PRETRAIN_STEPS logger=csv && \
      $(declare -f export_of link_export); WORK=$WORK; link_export pretrain $WORK/base"
fi

# 5. LoRA on the held-out speaker.
stage lora "$WORK/lora" bash -c "$PY train.py recipe=lora init_from=$WORK/base model=$MODEL_SIZE \
    codec=$CODEC_SIZE ${COMMON[*]} data.speakers=[$HELDOUT] data.train_splits=[heldout] \
    data.val_splits=[heldout] trainer.max_steps=$LORA_STEPS logger=csv && \
    $(declare -f export_of link_export); WORK=$WORK; link_export lora $WORK/lora"

# 6. GRPO from the base model.
stage grpo "$WORK/grpo" bash -c "$PY train.py recipe=grpo init_from=$WORK/base ${COMMON[*]} \
    data.manifest=$WORK/demo/manifest.jsonl trainer.max_steps=$GRPO_STEPS logger=csv && \
    $(declare -f export_of link_export); WORK=$WORK; link_export grpo $WORK/grpo"

# 7. Evaluation of each checkpoint through the inference path, then the comparison report.
for name in base lora grpo; do
  stage "eval_$name" "$WORK/eval/$name/metrics.json" \
    $PY eval.py ckpt="$WORK/$name" suite=quick paths.data_dir="$WORK" logger=none \
      hydra.run.dir="$WORK/eval/$name" suite.out_dir="$WORK/eval/$name"
done
$PY eval.py compare="[$WORK/eval/base,$WORK/eval/lora,$WORK/eval/grpo]" logger=none \
  hydra.run.dir="$WORK/eval/compare"

echo "[demo] stage wall times (s):"
for f in "$WORK"/times/*; do printf '  %-12s %s\n' "$(basename "$f")" "$(cat "$f")"; done
echo "[demo] results: $WORK/eval (report.md per checkpoint, comparison in $WORK/eval/compare)"
