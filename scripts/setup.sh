#!/usr/bin/env bash
# Idempotent set-up used by both README commands: Debian packages (flite, espeak-ng, sox), a virtual
# environment in .venv and the pinned Python packages. Re-runs pip only when pyproject.toml changed.
set -euo pipefail
cd "$(dirname "$0")/.."

VENV="${S2TRAIN_VENV:-.venv}"
PYTHON="${PYTHON:-python3}"

# 1. Debian packages the demo corpus and the tag tests need.
missing=()
for bin in flite espeak-ng sox; do
  command -v "$bin" >/dev/null 2>&1 || missing+=("$bin")
done
if ((${#missing[@]})); then
  if [[ $(id -u) -eq 0 ]] && command -v apt-get >/dev/null 2>&1; then
    echo "[s2train] installing Debian packages: ${missing[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
  else
    echo "[s2train] missing system packages: ${missing[*]}" >&2
    echo "[s2train] install them first, then re-run:  sudo apt-get install -y ${missing[*]}" >&2
    exit 1
  fi
fi

# 2. Python >= 3.11 and the virtual environment.
if ! "$PYTHON" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else 1)'; then
  echo "[s2train] Python >= 3.11 is required (found $("$PYTHON" --version 2>&1)); set PYTHON=python3.11" >&2
  exit 1
fi
if [[ ! -x "$VENV/bin/python" ]]; then
  echo "[s2train] creating virtual environment in $VENV"
  "$PYTHON" -m venv "$VENV"
fi

# 3. Pinned packages (torch 2.11.0 from PyPI is a CUDA build that also runs on CPU: a few GB, once).
stamp="$VENV/.s2train-installed"
want="$(sha256sum pyproject.toml | cut -d' ' -f1)"
if [[ ! -f "$stamp" || "$(cat "$stamp")" != "$want" ]]; then
  echo "[s2train] installing pinned Python packages into $VENV (first time: several minutes)"
  "$VENV/bin/python" -m pip install -q --upgrade pip
  "$VENV/bin/python" -m pip install -q -e '.[eval,dev]'
  echo "$want" > "$stamp"
fi
echo "[s2train] environment ready: $VENV"
