#!/usr/bin/env bash
# The demo pipeline: prepare -> codec -> encode -> pretrain -> lora -> grpo -> eval -> compare.
# Each stage writes into $WORK (default data/demo_run) and is skipped when its output exists, so a killed
# run resumes where it stopped. Shipped checkpoints in checkpoints/demo/{codec,dualar} are used when they
# exist; FULL=1 (or their absence) trains the codec and the base Dual-AR here instead.
#
#   bash recipes/demo/run.sh                       # default path (see recipes/demo/README.md for timings)
#   FULL=1 TRAINER=gpu CODEC_STEPS=20000 PRETRAIN_STEPS=20000 bash recipes/demo/run.sh   # real scale, GPU
#   SIZE=tiny bash recipes/demo/run.sh             # smoke run in a few minutes (numbers meaningless)
set -euo pipefail
cd "$(dirname "$0")/../.."

PY="${PY:-.venv/bin/python}"
SIZE="${SIZE:-small}"                 # corpus size: tiny | small | large
WORK="${WORK:-data/demo_run}"
TRAINER="${TRAINER:-cpu}"
FULL="${FULL:-0}"
SHIPPED="${SHIPPED:-checkpoints/demo}"
CODEC_STEPS="${CODEC_STEPS:-400}"     # used only when the codec is trained here
PRETRAIN_STEPS="${PRETRAIN_STEPS:-150}"
LORA_STEPS="${LORA_STEPS:-30}"
GRPO_STEPS="${GRPO_STEPS:-4}"
MODEL="${MODEL:-demo}"
EVAL_ITEMS="${EVAL_ITEMS:-4}"
if [[ "$SIZE" == tiny ]]; then
  CODEC_STEPS=${CODEC_STEPS_TINY:-10} PRETRAIN_STEPS=${PRETRAIN_STEPS_TINY:-10}
  LORA_STEPS=${LORA_STEPS_TINY:-3} GRPO_STEPS=${GRPO_STEPS_TINY:-1} MODEL=tiny EVAL_ITEMS=2
fi
# The tiny model speaks with the demo codec's 8 x 1024 codebooks.
MODEL_ARGS=(model="$MODEL" model.num_codebooks=8 model.codebook_size=1024 codec=demo)
HELDOUT="$($PY -c 'from s2train.data.demo import HELDOUT_SPEAKER; print(HELDOUT_SPEAKER)')"
mkdir -p "$WORK/times"
COMMON=(trainer="$TRAINER" paths.data_dir="$WORK" paths.log_dir="$WORK/outputs" logger=csv)

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

# 1. Corpus.
stage prepare "$WORK/demo/manifest.jsonl" \
  $PY -m s2train.data.demo out="$WORK/demo" size="$SIZE" seed=0

# 2. Codec: shipped, or trained here (mel-only at lr 5e-4: how the shipped spectral demo codec was trained).
if [[ "$FULL" != 1 && -f "$SHIPPED/codec/config.json" ]]; then
  ln -sfn "$(realpath "$SHIPPED/codec")" "$WORK/codec"
else
  stage codec "$WORK/codec/config.json" \
    $PY train.py recipe=codec codec=demo "${COMMON[@]}" trainer.max_steps="$CODEC_STEPS" \
      module.lr=5e-4 module.mel_warmup_steps=1000000 export_dir="$WORK/codec"
fi

# 3. Codes of the whole corpus through the codec.
stage encode "$WORK/demo/codes/summary.json" \
  $PY -m s2train.data.encode codec="$WORK/codec" manifest="$WORK/demo/manifest.jsonl" out="$WORK/demo/codes"

# 4. Base Dual-AR: shipped (it is demo-sized: MODEL=demo only), or pre-trained here.
if [[ "$FULL" != 1 && "$MODEL" == demo && -f "$SHIPPED/dualar/config.json" ]]; then
  ln -sfn "$(realpath "$SHIPPED/dualar")" "$WORK/base"
else
  stage pretrain "$WORK/base/config.json" \
    $PY train.py recipe=pretrain "${MODEL_ARGS[@]}" "${COMMON[@]}" trainer.max_steps="$PRETRAIN_STEPS" \
      trainer.val_check_interval=100 export_dir="$WORK/base"
fi

# 5. LoRA on the held-out speaker (all of its items; it was never seen in pre-training), with the base
#    model's own tokenizer (the shipped base has one trained on the large corpus).
stage lora "$WORK/lora/config.json" \
  $PY train.py recipe=lora init_from="$WORK/base" "${MODEL_ARGS[@]}" "${COMMON[@]}" \
    data.tokenizer_dir="$WORK/base/tokenizer" data.speakers="[$HELDOUT]" data.train_splits=[heldout] data.val_splits=[heldout] \
    trainer.max_steps="$LORA_STEPS" trainer.val_check_interval=null export_dir="$WORK/lora"

# 6. GRPO from the base model (rewards: ASR intelligibility, speaker similarity, length/repetition).
stage grpo "$WORK/grpo/config.json" \
  $PY train.py recipe=grpo init_from="$WORK/base" "${COMMON[@]}" data.manifest="$WORK/demo/manifest.jsonl" \
    module.max_frames=150 trainer.max_steps="$GRPO_STEPS" export_dir="$WORK/grpo"

# 7. Each checkpoint through the eval suite (generation via s2train.inference), then the comparison.
for name in base lora grpo; do
  stage "eval_$name" "$WORK/eval/$name/metrics.json" \
    $PY eval.py ckpt="$WORK/$name" suite=quick paths.data_dir="$WORK" logger=none \
      suite.evalset.max_items="$EVAL_ITEMS" suite.out_dir="$WORK/eval/$name" hydra.run.dir="$WORK/eval/$name/hydra"
done
$PY eval.py compare="[$WORK/eval/base,$WORK/eval/lora,$WORK/eval/grpo]" logger=none \
  paths.output_dir="$WORK/eval/compare" hydra.run.dir="$WORK/eval/compare"

echo "[demo] stage wall times (s):"
for f in "$WORK"/times/*; do printf '  %-12s %s\n' "$(basename "$f")" "$(cat "$f")"; done
echo "[demo] results: $WORK/eval/<base|lora|grpo>/report.md and $WORK/eval/compare/"
