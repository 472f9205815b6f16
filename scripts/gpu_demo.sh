#!/usr/bin/env bash
# How the shipped demo checkpoints (checkpoints/demo/) were trained: the project's own recipes, time-boxed,
# on one lent H100 whose image has torch + Lightning but not hydra/datasets/soundfile (carried as wheels in
# .whl/, see docs/checkpoints.md). Every stage is plain `python train.py recipe=...`.
#
#   bash scripts/gpu_demo.sh codec      # recipe=codec on data/gpu_codec (a 50 MB slice of the large corpus)
#   bash scripts/gpu_demo.sh pretrain   # recipe=pretrain on data/gpu_codes (large corpus encoded by that codec)
#
# Knobs (env): OUT (results folder, default gpu_out), TRAINER (gpu), PRECISION (codec 32-true, pretrain
# bf16-mixed), CODEC_SECONDS (300), GAN_AFTER (150 s of mel-only warm-up), CODEC_BATCH (64), CODEC_LR (3e-4), CODEC_INIT (a codec
# folder to continue from),
# CUDNN_BENCHMARK (codec: true; fixed crop shapes; not yet measured, see docs/checkpoints.md),
# AR_STEPS (3000), AR_SECONDS (240: a time cap on top of AR_STEPS), AR_BATCH (32), WORKERS (8),
# AR_CODES (data/gpu_codes), AR_TOKENIZER (data/gpu_codes_tokenizer), AR_INIT (a bundle or .ckpt to continue
# from; the shipped base was trained with data/demo_xl_codes + data/demo_large_tok, see its README),
# AR_DROPOUT (0.1, as the shipped base), AR_G2P (null; espeak: IPA transcripts, needs a new AR_TOKENIZER dir),
# AR_ALIGN (0: alignment-prior weight, 1.0 to guide 2 heads of slow layer 1), AR_AUDIO_DROP (0: audio-frame input
# dropout; session 6 tried 0.2), AR_PRIOR (null: the forward-pass attention prior, a Hydra dict such as
# '{heads: 2, sigma: 0.1, hold_steps: 2000, anneal_steps: 4000}'), AR_TEXT_DROP (0: data.text_dropout),
# AR_LR (3e-4) / AR_AUDIO_LR (6e-4) / AR_WARMUP (200) / AR_VAL_EVERY (500),
# AR_CURRICULUM (0: data.curriculum_steps, shortest items first), AR_MAX_FAST (null: module.max_fast_frames,
# a cap on the target frames the fast AR trains on per batch; its cost dominates a step on the CPU), AR_CODES_TAR (a .tar.xz of code datasets, unpacked into data/ first: carries ~5x more hours in 64 MiB).
set -euo pipefail
STAGE=${1:?usage: gpu_demo.sh codec|pretrain}
OUT=${OUT:-gpu_out}
PY=${PYTHON:-python3}
TRAINER=${TRAINER:-gpu}
WORKERS=${WORKERS:-8}
export PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 WANDB_MODE=offline
mkdir -p "$OUT"
if ! $PY -c "import hydra, datasets, soundfile" 2>/dev/null && ls .whl/*.whl >/dev/null 2>&1; then
  $PY -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
  export PYTHONPATH=/tmp/site:${PYTHONPATH:-.}
fi
command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,memory.total --format=csv,noheader || true
RUN=outputs/gpu_demo/$STAGE
# Lightning's max_time as DD:HH:MM:SS
max_time() { printf '"00:%02d:%02d:%02d"' $(($1 / 3600)) $(($1 % 3600 / 60)) $(($1 % 60)); }
rm -rf "$RUN"

case $STAGE in
codec)
  # mel-only warm-up for GAN_AFTER seconds, then the discriminators, until CODEC_SECONDS; fp32 (TF32 matmuls)
  $PY train.py recipe=codec trainer="$TRAINER" trainer.precision="${PRECISION:-32-true}" logger=csv \
    data.manifest=data/gpu_codec/manifest.jsonl data.batch_size="${CODEC_BATCH:-64}" data.crop_seconds=1.0 \
    data.num_workers="$WORKERS" module.lr="${CODEC_LR:-3e-4}" module.mel_warmup_steps=1000000000 \
    module.sample_every_n_steps=0 module.init_from="${CODEC_INIT:-null}" +callbacks.disc_timer._target_=s2train.lit.callbacks.DiscriminatorStartTimer \
    +callbacks.disc_timer.seconds="${GAN_AFTER:-150}" trainer.max_steps=1000000000 \
    "++trainer.max_time=$(max_time "${CODEC_SECONDS:-300}")" trainer.val_check_interval=500 \
    ++trainer.limit_val_batches=2 ++trainer.log_every_n_steps=25 ++trainer.enable_progress_bar=false \
    ++trainer.benchmark="${CUDNN_BENCHMARK:-true}" '~callbacks.progress_bar' \
    callbacks.model_checkpoint.every_n_train_steps=4000 \
    hydra.run.dir="$RUN" 2>&1 | tee "$OUT/codec_log.txt"
  # fp16 export (what ships: half the size, loaded back as fp32)
  $PY -c "
from s2train.codec import load_codec, save_codec
save_codec(load_codec('$RUN/export'), '$OUT/codec', fp16=True)"
  cp "$RUN"/loss_curves.png "$OUT/codec_loss_curves.png" 2>/dev/null || true
  cp "$(find "$RUN" -name metrics.csv | head -1)" "$OUT/codec_metrics.csv" 2>/dev/null || true
  ;;
pretrain)
  if [[ -n "${AR_CODES_TAR:-}" ]]; then tar -xJf "$AR_CODES_TAR" -C data; fi
  $PY train.py recipe=pretrain trainer="$TRAINER" trainer.precision="${PRECISION:-bf16-mixed}" logger=csv \
    data.dataset_dir="${AR_CODES:-data/gpu_codes}" data.tokenizer_dir="${AR_TOKENIZER:-data/gpu_codes_tokenizer}" \
    model.num_codebooks=8 model.codebook_size=1024 model.dropout="${AR_DROPOUT:-0.1}" init_from="${AR_INIT:-null}" \
    data.batch_size="${AR_BATCH:-32}" data.num_workers="$WORKERS" module.codec_dir=checkpoints/demo/codec \
    data.g2p="${AR_G2P:-null}" module.align_weight="${AR_ALIGN:-0}" module.align_heads=2 \
    model.audio_input_dropout="${AR_AUDIO_DROP:-0}" "module.attn_prior=${AR_PRIOR:-null}" \
    ++data.text_dropout="${AR_TEXT_DROP:-0}" ++data.curriculum_steps="${AR_CURRICULUM:-0}" module.max_fast_frames="${AR_MAX_FAST:-null}" module.lr="${AR_LR:-3e-4}" module.audio_lr="${AR_AUDIO_LR:-6e-4}" \
    trainer.max_steps="${AR_STEPS:-3000}" "++trainer.max_time=$(max_time "${AR_SECONDS:-240}")" \
    module.warmup_steps="${AR_WARMUP:-200}" trainer.val_check_interval="${AR_VAL_EVERY:-500}" ++trainer.limit_val_batches=8 \
    ++trainer.log_every_n_steps=25 ++trainer.enable_progress_bar=false '~callbacks.progress_bar' '~callbacks.reading' \
    callbacks.model_checkpoint.every_n_train_steps=100000 hydra.run.dir="$RUN" 2>&1 | tee "$OUT/pretrain_log.txt"
  # bf16 weights: what ships, and under the 16 MiB per-file limit of the device tool's returned files
  $PY -c "
import pathlib, shutil
from safetensors.torch import load_file, save_file
from s2train.bundle import load_pretrained
src = pathlib.Path('$RUN/export'); dst = pathlib.Path('$OUT/dualar')
shutil.copytree(src, dst, dirs_exist_ok=True)
state = load_file(str(src / 'model.safetensors'))
save_file({k: v.bfloat16() if v.is_floating_point() else v for k, v in state.items()}, str(dst / 'model.safetensors'))
load_pretrained(str(dst))  # the bf16 bundle loads
print(sorted(p.name for p in dst.iterdir()))"
  cp "$RUN"/loss_curves.png "$OUT/pretrain_loss_curves.png" 2>/dev/null || true
  cp "$(find "$RUN" -name metrics.csv | head -1)" "$OUT/pretrain_metrics.csv" 2>/dev/null || true
  # the validation table (text gap, alignment statistics) with date, card, versions and commit
  $PY scripts/summarize_run.py "$OUT/pretrain_metrics.csv" "$OUT/pretrain_summary.json" --extra "$(printf \
    '{"codes": "%s", "batch": "%s", "steps": "%s", "seconds": "%s", "lr": "%s", "prior": "%s", "align": "%s", "audio_drop": "%s", "text_drop": "%s", "curriculum": "%s"}' \
    "${AR_CODES:-data/gpu_codes}" "${AR_BATCH:-32}" "${AR_STEPS:-3000}" "${AR_SECONDS:-240}" "${AR_LR:-3e-4}" \
    "${AR_PRIOR:-null}" "${AR_ALIGN:-0}" "${AR_AUDIO_DROP:-0}" "${AR_TEXT_DROP:-0}" "${AR_CURRICULUM:-0}")" || true
  ;;
*)
  echo "unknown stage $STAGE (codec|pretrain)" >&2
  exit 2
  ;;
esac
echo "gpu_demo $STAGE: OK"
