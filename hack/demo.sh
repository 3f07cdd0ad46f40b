#!/usr/bin/env bash
# `make demo`: the user's whole journey on this machine (no cluster, no Docker needed).
#
# Each step is a function `step_<name>`, run in the order of STEPS; to extend the demo, add
# a function and its name to STEPS. The journey itself (PostgreSQL, OPA, control plane +
# operator, injected Deployment, an agent governed by the sidecar until it is halted, its
# audit trail and metrics) is `haltgate demo` (cli/haltgate/cli/demo.py), which starts
# and stops everything it needs and cleans up on exit, also when interrupted.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON="${PYTHON:-.venv/bin/python}"
HALTGATE="$(dirname "$PYTHON")/haltgate"   # the CLI entry point installed in the venv
DEMO_DIR="$(mktemp -d -t haltgate-demo-sh.XXXXXX)"
STEPS=(validate_offline journey)

say()  { printf '\n\033[1m== %s\033[0m\n' "$*"; }
run()  { printf '$ %s\n' "$*"; "$@"; }

cleanup() {
  local rc=$?
  rm -rf "$DEMO_DIR"
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

step_validate_offline() {
  say "Validating the example policies offline (the same check the admission webhook runs)"
  run "$HALTGATE" policy validate docs/examples/*.yaml
  say "A broken policy is refused, every error with its field path (exit 1 expected)"
  if run "$HALTGATE" policy validate tests/unit/testdata/policy-broken.yaml; then
    echo "the broken policy was accepted: that is a bug" >&2; return 1
  fi
}

step_journey() {
  say "The journey: install, govern an agent, watch it halt, read the audit trail"
  run "$HALTGATE" demo
}

for step in "${STEPS[@]}"; do "step_$step"; done
