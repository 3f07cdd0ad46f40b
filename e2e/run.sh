#!/usr/bin/env bash
# haltgate end to end on a kind cluster (needs Docker, kind, kubectl, helm):
#   create the cluster, build and load the image, helm install, deploy stand-in upstreams and
#   a sample agent, apply its policy, watch the agent get halted, query its audit trail,
#   tear down.
#
#   e2e/run.sh                # everything, cluster deleted at the end (also on failure)
#   KEEP=1 e2e/run.sh         # keep the cluster for a look around (kind delete cluster --name haltgate-e2e)
#   REDIRECT=node e2e/run.sh  # the restricted-namespace journey: the agents' namespace enforces
#                             # Pod Security "restricted", the chart runs the node agent
#                             # (--set nodeAgent.enabled=true --set injection.redirect=node) and
#                             # the agent pod is admitted with no capability, its rules installed
#                             # from the node, then governed and halted as in the default run
#
# The parts that need no Docker (the chart render, these manifests, the agent) are checked by
# tests/chart/test_e2e_assets.py against the test bed's real kube-apiserver.
set -euo pipefail
cd "$(dirname "$0")/.."

CLUSTER="${CLUSTER:-haltgate-e2e}"
IMAGE="haltgate:e2e"
NODE_IMAGE="${NODE_IMAGE:-kindest/node:v1.31.2}"
RELEASE_NS=haltgate-system
AGENT_NS=e2e-agents
TIMEOUT=300s
REDIRECT="${REDIRECT:-init}"
case "$REDIRECT" in
  init) MODE_ARGS=() ;;
  node) MODE_ARGS=(--set nodeAgent.enabled=true --set injection.redirect=node) ;;
  *) echo "REDIRECT must be init or node, not '$REDIRECT'" >&2; exit 2 ;;
esac

say() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
need() { command -v "$1" >/dev/null || { echo "e2e needs $1 on PATH" >&2; exit 2; }; }
for tool in docker kind kubectl helm; do need "$tool"; done

cleanup() {
  local rc=$?
  if [[ $rc -ne 0 ]]; then
    say "Failed (exit $rc): operator and agent logs"
    kubectl -n "$RELEASE_NS" logs deploy/haltgate-operator --tail=50 || true
    if [[ "$REDIRECT" == node ]]; then
      kubectl -n "$RELEASE_NS" logs ds/haltgate-node-agent --tail=50 || true
      kubectl -n "$AGENT_NS" get events --field-selector involvedObject.kind=Pod || true
    fi
    kubectl -n "$AGENT_NS" logs deploy/researcher --all-containers --tail=50 || true
  fi
  if [[ "${KEEP:-0}" != 1 ]]; then
    say "Tearing down"
    kind delete cluster --name "$CLUSTER" || true
  fi
  exit "$rc"
}
trap cleanup EXIT

say "Creating kind cluster $CLUSTER"
kind create cluster --name "$CLUSTER" --image "$NODE_IMAGE" --config e2e/kind-config.yaml --wait 120s
kubectl config use-context "kind-$CLUSTER"

say "Building $IMAGE and loading it into the nodes"
docker build -t "$IMAGE" .
kind load docker-image "$IMAGE" --name "$CLUSTER"

say "helm install (CRDs, operator x2, bundled PostgreSQL, audit schema; redirect: $REDIRECT)"
# The agents' namespace exists first: the chart binds the operator's rights in it.
kubectl create namespace "$AGENT_NS" --dry-run=client -o yaml | kubectl apply -f -
if [[ "$REDIRECT" == node ]]; then
  # What most managed clusters enforce for application namespaces: the init-container
  # mode (root, NET_ADMIN) would be refused here.
  kubectl label namespace "$AGENT_NS" --overwrite \
    pod-security.kubernetes.io/enforce=restricted pod-security.kubernetes.io/enforce-version=latest
fi
helm install haltgate charts/haltgate --namespace "$RELEASE_NS" --create-namespace \
  -f e2e/values.yaml ${MODE_ARGS[@]+"${MODE_ARGS[@]}"} --wait --timeout "$TIMEOUT"
if [[ "$REDIRECT" == node ]]; then
  # Ready once each agent pod has listed its node's pods: every node is watching.
  kubectl -n "$RELEASE_NS" rollout status ds/haltgate-node-agent --timeout="$TIMEOUT"
fi
kubectl -n "$RELEASE_NS" get pods
# The operator registers the webhook configurations when it starts.
kubectl wait --for=create mutatingwebhookconfiguration/haltgate-injector --timeout=60s

say "Stand-in LLM and MCP server (outside haltgate's reach: not opted in)"
kubectl apply -f e2e/manifests/standins.yaml
for d in llm mcp; do kubectl -n e2e-tools rollout status "deploy/$d" --timeout="$TIMEOUT"; done

say "The agent's GovernancePolicy (validated by the webhook), then the annotated agent"
kubectl apply -f e2e/manifests/policy.yaml
kubectl -n "$AGENT_NS" create configmap researcher-agent --from-file=agent.py=e2e/agent.py
kubectl apply -f e2e/manifests/agent.yaml
kubectl -n "$AGENT_NS" rollout status deploy/researcher --timeout="$TIMEOUT"
POD=$(kubectl -n "$AGENT_NS" get pods -l app=researcher -o jsonpath='{.items[0].metadata.name}')
echo "injected containers of $POD:"
kubectl -n "$AGENT_NS" get pod "$POD" \
  -o jsonpath='{range .spec.initContainers[*]}  init {.name}{"\n"}{end}{range .spec.containers[*]}  main {.name}{"\n"}{end}'
if [[ "$REDIRECT" == node ]]; then
  say "Node mode: admitted under restricted, no capability, rules installed from the node"
  INITS=$(kubectl -n "$AGENT_NS" get pod "$POD" -o jsonpath='{.spec.initContainers[*].name}')
  [[ " $INITS " == *" haltgate-verify "* && " $INITS " != *" haltgate-init "* ]] \
    || { echo "not injected for node mode: init containers '$INITS'" >&2; exit 1; }
  ADDED=$(kubectl -n "$AGENT_NS" get pod "$POD" \
    -o jsonpath='{.spec.initContainers[*].securityContext.capabilities.add}{.spec.containers[*].securityContext.capabilities.add}')
  [[ -z "$ADDED" ]] || { echo "the pod adds capabilities: $ADDED" >&2; exit 1; }
  # The verify step passed (the agent started) and the node agent says what it installed.
  kubectl -n "$AGENT_NS" get pod "$POD" \
    -o jsonpath='{range .status.initContainerStatuses[*]}  {.name}: {.state}{"\n"}{end}'
  kubectl -n "$AGENT_NS" get events --field-selector "involvedObject.name=$POD,reason=RedirectInstalled" \
    -o jsonpath='{range .items[*]}{.reason}: {.message}{"\n"}{end}' | grep RedirectInstalled \
    || { echo "no RedirectInstalled Event from the node agent on $POD" >&2; exit 1; }
fi

say "Waiting for the halt"
for _ in $(seq 1 60); do
  if kubectl -n "$AGENT_NS" logs "$POD" -c agent | grep -q '^HALTED'; then break; fi
  sleep 2
done
kubectl -n "$AGENT_NS" logs "$POD" -c agent
kubectl -n "$AGENT_NS" logs "$POD" -c agent | grep -q '^HALTED EXHAUSTION' \
  || { echo "the agent was not halted by its budget" >&2; exit 1; }

say "Audit: ship the sidecar's spool to PostgreSQL, then read the run back"
DSN=$(kubectl -n "$RELEASE_NS" get secret haltgate-postgresql -o jsonpath='{.data.dsn}' | base64 -d)
kubectl -n "$AGENT_NS" exec "$POD" -c haltgate-proxy -- \
  haltgate audit ship --once --spool /var/lib/haltgate/audit --dsn "$DSN"
kubectl -n "$RELEASE_NS" run audit-query --rm -i --restart=Never --image "$IMAGE" \
  --image-pull-policy=Never --env "HALTGATE_AUDIT_DSN=$DSN" --command -- \
  sh -c 'haltgate audit cost && haltgate audit query --limit 20 && haltgate audit verify'

say "External halt and lift through the operator"
kubectl -n "$AGENT_NS" annotate govpol researcher haltgate.dev/halt="e2e drill"
sleep 3
kubectl -n "$AGENT_NS" get govpol researcher -o jsonpath='{.status.halts}{"\n"}'
kubectl -n "$AGENT_NS" annotate govpol researcher haltgate.dev/halt-

say "e2e passed"
