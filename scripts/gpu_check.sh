#!/usr/bin/env bash
# Superseded by `scripts/gpu_run.sh speed` (issue 19: guarded steps, S2 Pro benchmark first, JSON under
# $OUT/speed/, a CPU dry run in the tests). Kept so older notes still run the right thing.
#   bash scripts/gpu_check.sh [--dry]
exec bash "$(dirname "$0")/gpu_run.sh" speed "$@"
