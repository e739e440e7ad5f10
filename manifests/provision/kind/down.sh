#!/usr/bin/env bash
# manifests/provision/kind/down.sh — delete the kind cluster and the local registry container
# that up.sh created. KEEP_REGISTRY=1 keeps the registry (and its pushed images) for the next
# up.sh; CLUSTER_NAME and REG_NAME as in up.sh.
#
# Assumes on PATH: docker (a running engine) and kind.
set -euo pipefail

CLUSTER_NAME="${CLUSTER_NAME:-tidescale}"
REG_NAME="${REG_NAME:-kind-registry}"

for tool in docker kind; do
    command -v "$tool" >/dev/null 2>&1 || {
        printf '[kind-down] ERROR: %s is required on PATH\n' "$tool" >&2
        exit 1
    }
done

if kind get clusters 2>/dev/null | grep -qx "$CLUSTER_NAME"; then
    kind delete cluster --name "$CLUSTER_NAME"
fi
if [[ "${KEEP_REGISTRY:-0}" != 1 ]]; then
    docker rm -f "$REG_NAME" >/dev/null 2>&1 || true
fi
printf '[kind-down] removed cluster %s%s\n' "$CLUSTER_NAME" \
    "$([[ "${KEEP_REGISTRY:-0}" == 1 ]] && echo '' || echo " and registry $REG_NAME")"
