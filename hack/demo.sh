#!/usr/bin/env bash
# `make demo`: start the local pieces of haltgate that exist, show what each does, tear down.
#
# Each step is a function `step_<name>`, run in the order of STEPS; to extend the demo, add
# a function and its name to STEPS. Steps share: $DEMO_DIR (scratch space, removed at the
# end), $KUBECONFIG (the demo control plane), $PYTHON, $HALTGATE (the CLI), $BIN (the binary cache) and `say`.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON="${PYTHON:-.venv/bin/python}"
HALTGATE="$(dirname "$PYTHON")/haltgate"   # the CLI entry point installed in the venv
BIN="${HALTGATE_BIN_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/haltgate/bin}"
DEMO_DIR="$(mktemp -d -t haltgate-demo.XXXXXX)"
export HALTGATE_CLUSTER_DIR="$DEMO_DIR/cluster" KUBECONFIG="$DEMO_DIR/cluster/kubeconfig"
NAMESPACE=agents
DID=()   # one line per step, printed at the end

STEPS=(control_plane validate_offline apply_policies schema_rejects opa_decision)

say()  { printf '\n\033[1m== %s\033[0m\n' "$*"; }
run()  { printf '$ %s\n' "$*"; "$@"; }
kubectl() { "$BIN/kubectl" "$@"; }  # the pinned build, not whatever is on PATH

cleanup() {
  local rc=$?
  say "Tearing down"
  "$PYTHON" -m tests.testbed down || true
  rm -rf "$DEMO_DIR"
  exit "$rc"
}
trap cleanup EXIT INT TERM

step_control_plane() {
  say "Starting a real Kubernetes control plane (etcd + kube-apiserver) on 127.0.0.1"
  "$PYTHON" -m tests.testbed up
  DID+=("started etcd, kube-apiserver and kube-controller-manager on loopback, applied crds/")
}

step_validate_offline() {
  say "Validating the example policies offline (the same check the admission webhook runs)"
  run "$HALTGATE" policy validate docs/examples/*.yaml
  say "A broken policy is refused, every error with its field path (exit 1 expected)"
  if run "$HALTGATE" policy validate tests/unit/testdata/policy-broken.yaml; then
    echo "the broken policy was accepted: that is a bug" >&2; return 1
  fi
  DID+=("validated docs/examples/*.yaml (valid) and a broken policy (refused with field paths)")
}

step_apply_policies() {
  say "Applying the example GovernancePolicies and BudgetPools (docs/examples/)"
  local ns namespaces
  namespaces=$("$PYTHON" -c '
import sys, yaml
names = {d.get("metadata", {}).get("namespace") or "default"
         for path in sys.argv[1:] for d in yaml.safe_load_all(open(path)) if d}
print(" ".join(sorted(names | {"agents"})))' docs/examples/*.yaml)
  for ns in $namespaces; do run kubectl create namespace "$ns"; done
  run kubectl apply -f docs/examples/
  run kubectl get haltgate --all-namespaces
  run kubectl get govpol --all-namespaces -o wide
  run kubectl get bpool --all-namespaces
  DID+=("created the example policies and pools; listed them by category, short name and columns")
}

step_schema_rejects() {
  say "The apiserver enforces the generated schema too (exit 1 expected)"
  if run kubectl apply -n "$NAMESPACE" -f - <<'EOF'
apiVersion: haltgate.dev/v1alpha1
kind: GovernancePolicy
metadata: {name: overspend}
spec:
  budgets:
    tokens: {limit: -5}
    costUSD: {limit: 1, period: week}
EOF
  then echo "the apiserver accepted an invalid policy: that is a bug" >&2; return 1; fi
  DID+=("saw the apiserver refuse an invalid policy, naming spec.budgets.tokens.limit")
}

step_opa_decision() {
  say "Evaluating the finance policy's Rego with the real OPA binary"
  "$PYTHON" - docs/examples/policy-opa.yaml "$DEMO_DIR/policy.rego" <<'EOF'
import sys, yaml
doc = yaml.safe_load(open(sys.argv[1]))
open(sys.argv[2], "w").write(doc["spec"]["opa"]["rego"])
EOF
  local input
  for input in '{"request": {"kind": "llm"}}' '{"request": {"kind": "http", "method": "DELETE"}}'; do
    echo "input: $input"
    echo "$input" | run "$BIN/opa" eval --stdin-input --format=pretty \
      --data "$DEMO_DIR/policy.rego" 'data.haltgate.decision'
  done
  DID+=("asked OPA for decisions: an LLM call is allowed, an HTTP DELETE is denied")
}

for step in "${STEPS[@]}"; do "step_$step"; done

say "What the demo did"
printf '  - %s\n' "${DID[@]}"
cat <<'EOF'

Not in this demo yet (later work): the operator and its webhook injecting the sidecar, the
sidecar governing real agent traffic (budgets, tool rules, guardrails, audit).
Keep a control plane running for yourself: make cluster-up (make cluster-down to stop it).
EOF
