#!/usr/bin/env bash
# The code dataset of the GPU reading run (issue 18): demo corpora of size=large rendered with seeds
# 0..N-1 (~2.2 h of speech each), coded by the shipped codec, concatenated, and packed as a .tar.xz that a
# lent GPU call carries (13.2 h for seeds 0-5: 11 MB packed, 160 MB unpacked).
#   bash scripts/make_reading_codes.sh            # SEEDS="0 1 2 3 4 5" -> data/codes_big + data/codes_big.tar.xz
# Seed 0 keeps its val/test/heldout items (the evaluation sets); the other seeds bring train items whose
# sentence is not an evaluation sentence of seed 0 (scripts/merge_demo_corpora.py), ids prefixed s<seed>_.
# Every stage is skipped when its output exists, so an interrupted run resumes. About 40 min on 2 quiet cores
# (render ~4 min and encode ~3 min per seed; two seeds at a time). Knobs: SEEDS, OUT (data/codes_big),
# CODEC (checkpoints/demo/codec), PY (.venv/bin/python).
set -euo pipefail
cd "$(dirname "$0")/.."
SEEDS=${SEEDS:-"0 1 2 3 4 5"}
OUT=${OUT:-data/codes_big}
CODEC=${CODEC:-checkpoints/demo/codec}
PY=${PY:-.venv/bin/python}
export HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 OMP_NUM_THREADS=1
corpus() { if [ "$1" = 0 ]; then echo data/demo_large; else echo "data/demo_large_s$1"; fi; }

one_seed() { # render, select, encode one seed
  local s=$1 dir manifest
  dir=$(corpus "$s")
  [ -f "$dir/manifest.jsonl" ] || $PY -m s2train.data.demo out="$dir" size=large seed="$s" >"$dir.render.log" 2>&1
  manifest=$dir/manifest.jsonl
  if [ "$s" != 0 ]; then
    manifest=data/extra_s$s.jsonl
    $PY scripts/merge_demo_corpora.py data/demo_large/manifest.jsonl "$dir/manifest.jsonl" \
      --out "data/merged_s0$s/manifest.jsonl" >/dev/null
    grep '"id": "s1_' "data/merged_s0$s/manifest.jsonl" | sed "s/\"id\": \"s1_/\"id\": \"s${s}_/" >"$manifest"
  fi
  [ -f "data/codes_s$s/summary.json" ] ||
    $PY -m s2train.data.encode codec="$CODEC" manifest="$manifest" out="data/codes_s$s" batch_size=16 \
      >"data/codes_s$s.encode.log" 2>&1
  echo "seed $s: data/codes_s$s"
}

mkdir -p data
one_seed 0 # the others filter against seed 0's evaluation sentences
set -- $SEEDS
shift # seed 0 done
while [ $# -gt 0 ]; do # two seeds at a time on the 2 cores
  one_seed "$1" &
  [ $# -gt 1 ] && one_seed "$2" &
  wait
  shift $(($# > 1 ? 2 : 1))
done
parts=()
for s in $SEEDS; do parts+=("data/codes_s$s"); done
rm -rf "$OUT"
$PY scripts/concat_codes.py "$OUT" "${parts[@]}"
tar -cJf "$OUT.tar.xz" -C "$(dirname "$OUT")" "$(basename "$OUT")"
ls -la "$OUT.tar.xz"
