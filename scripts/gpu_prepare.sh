#!/usr/bin/env bash
# Prepare what a lent-GPU call carries, and check it fits, before the call (issue 19; docs/checkpoints.md).
#   bash scripts/gpu_prepare.sh [PATH ...]      # default PATH: .whl
#   bash scripts/gpu_prepare.sh .whl data/demo_xxl_codes     # e.g. the reading call
# 1. `.whl/` (ignored): the cp312 manylinux wheels the GPU image lacks (hydra-core, omegaconf, soundfile + cffi,
#    pycparser, datasets + dill, multiprocess; antlr4 built here from its sdist). Downloaded once; FORCE=1
#    downloads again. Needs PyPI.
# 2. `.whl/COMMIT`: the commit (+ "-dirty") the JSON results record; the GPU machine gets no `.git`.
# 3. The carried paths' total size against the 64 MiB carry limit: prints each and fails (exit 1) when over,
#    or when a path is missing. Run it right before the call, with the exact list you pass as `carry`.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-$([ -x .venv/bin/python ] && echo .venv/bin/python || echo python3)}
LIMIT=$((64 * 1024 * 1024))
WHEELS=(hydra-core==1.3.8 omegaconf==2.3.1 soundfile==0.14.0 cffi==2.1.1 pycparser==3.12 datasets==5.2.0
  dill==0.4.1 multiprocess==0.70.19)
ANTLR=antlr4-python3-runtime==4.9.3 # sdist only on PyPI: built here
EXPECTED=$((${#WHEELS[@]} + 1))

mkdir -p .whl
have=$(find .whl -maxdepth 1 -type f -name '*.whl' | wc -l)
if [ "${FORCE:-0}" = 1 ] || [ "$have" -lt "$EXPECTED" ]; then
  echo "== downloading ${EXPECTED} wheels into .whl/ (cp312, manylinux x86_64)"
  "$PY" -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
    -d .whl "${WHEELS[@]}"
  "$PY" -m pip wheel -q --no-deps "$ANTLR" -w .whl
else
  echo "== .whl/ has ${have} wheels (FORCE=1 downloads again)"
fi
have=$(find .whl -maxdepth 1 -type f -name '*.whl' | wc -l)
if [ "$have" -lt "$EXPECTED" ]; then
  echo "gpu_prepare: .whl/ has ${have} wheels, expected ${EXPECTED}" >&2
  exit 1
fi
commit=$(git rev-parse HEAD)
[ -z "$(git status --porcelain --untracked-files=no)" ] || commit="$commit-dirty"
echo "$commit" >.whl/COMMIT
echo "== .whl/COMMIT: $commit"

[ $# -gt 0 ] || set -- .whl
echo "== carry (limit 64 MiB)"
total=0
status=0
for p in "$@"; do
  if [ ! -e "$p" ]; then
    echo "  MISSING  $p" >&2
    status=1
    continue
  fi
  bytes=$(du -sb "$p" | cut -f1)
  total=$((total + bytes))
  note=""
  git check-ignore -q "$p" || note="  (not ignored: it travels with the working tree anyway; carry is for ignored paths)"
  awk -v b="$bytes" -v p="$p" -v n="$note" 'BEGIN { printf "  %8.2f MiB  %s%s\n", b / 1048576, p, n }'
done
awk -v b="$total" -v l="$LIMIT" 'BEGIN { printf "  %8.2f MiB  total of %.0f MiB\n", b / 1048576, l / 1048576 }'
if [ "$total" -gt "$LIMIT" ]; then
  echo "gpu_prepare: the carried paths are $((total / 1048576)) MiB, over the 64 MiB limit: carry less" >&2
  status=1
fi
[ "$status" = 0 ] && printf 'carry: [%s]\n' "$(printf '"%s", ' "$@" | sed 's/, $//')"
exit "$status"
