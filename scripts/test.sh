#!/usr/bin/env bash
# README test command: set up (if needed) and run the default test suite (slow and gpu tests excluded).
#   bash scripts/test.sh            # default suite
#   bash scripts/test.sh -m slow    # the slow tests (shipped-model targets, long runs)
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 WANDB_MODE=offline TOKENIZERS_PARALLELISM=false
exec .venv/bin/python -m pytest "$@"
