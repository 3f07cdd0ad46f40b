#!/usr/bin/env bash
# Run every benchmark under bench/: bench/*.py as scripts, bench/<name>/ as `python -m
# bench.<name>` (when it has a __main__.py) or its executable `run`. Each prints its own
# ratios against a baseline measured in the same run. Fails if any benchmark fails.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-.venv/bin/python}"
# Extra arguments for every benchmark, e.g. BENCH_ARGS=--quick for a smoke run.
read -r -a ARGS <<<"${BENCH_ARGS:-}"
# Benchmarks may reuse the test bed and stand-ins (tests.*).
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"

ran=0 failed=()
run() {  # NAME COMMAND...
  local name=$1; shift
  printf '\n=== bench %s ===\n' "$name"
  local start=$SECONDS
  if "$@"; then printf '=== %s done in %ss\n' "$name" $((SECONDS - start))
  else failed+=("$name"); printf '=== %s FAILED\n' "$name"; fi
  ran=$((ran + 1))
}

shopt -s nullglob
for script in bench/*.py; do
  base=$(basename "$script")
  [[ $base == _* ]] && continue   # helpers and __init__.py
  run "$base" "$PYTHON" "$script" "${ARGS[@]}"
done
for dir in bench/*/; do
  name=$(basename "$dir")
  [[ $name == _* ]] && continue
  if [[ -f $dir/__main__.py ]]; then run "$name" "$PYTHON" -m "bench.$name" "${ARGS[@]}"
  elif [[ -x $dir/run ]]; then run "$name" "$dir/run" "${ARGS[@]}"
  fi
done

if (( ran == 0 )); then echo "no benchmarks yet under bench/"; exit 0; fi
if (( ${#failed[@]} )); then echo "failed: ${failed[*]}"; exit 1; fi
echo "all $ran benchmarks passed"
