#!/usr/bin/env bash
# README main command: set up (if needed), then run the demo pipeline (recipes/demo/run.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export TOKENIZERS_PARALLELISM=false
exec bash recipes/demo/run.sh "$@"
