#!/usr/bin/env bash
# manifests/provision/kind/up.sh — tidescale on a local kind cluster, end to end:
#   1. a local registry container `kind-registry` published on localhost:5001;
#   2. the kind cluster from cluster.yaml, with containerd on every node mirroring
#      localhost:5001 to that registry;
#   3. the tidescale image and the sample workers' image built and pushed to it;
#   4. the Helm chart installed as release `tidescale` in namespace `keda`;
#   5. the RabbitMQ sample: a broker, `rabbitmq-worker` at zero replicas and its ScaledObject.
# Then `kubectl apply -f manifests/examples/workers/rabbitmq/publish-job.yaml` makes it scale.
#
# Assumes on PATH: docker (a running engine, BuildKit), kind (>= 0.20), kubectl, helm (3.x).
# Run from anywhere; it is idempotent (re-running rebuilds, re-pushes and upgrades).
# Settings (environment): CLUSTER_NAME (tidescale), REG_NAME (kind-registry), REG_PORT (5001),
# TAG (dev), SKIP_BUILD=1 to reuse images already in the registry.
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/../../.." && pwd)"
HERE="$REPO/manifests/provision/kind"
CLUSTER_NAME="${CLUSTER_NAME:-tidescale}"
REG_NAME="${REG_NAME:-kind-registry}"
REG_PORT="${REG_PORT:-5001}"
TAG="${TAG:-dev}"
REGISTRY="localhost:${REG_PORT}"
WORKERS_IMAGE="$REGISTRY/tidescale-sample-workers:$TAG"

log() { printf '[kind-up] %s\n' "$*" >&2; }
die() {
    printf '[kind-up] ERROR: %s\n' "$*" >&2
    exit 1
}

for tool in docker kind kubectl helm; do
    command -v "$tool" >/dev/null 2>&1 || die "$tool is required on PATH (see the README's 'Run on kind')"
done
docker info >/dev/null 2>&1 || die "docker is installed but no engine answers (start Docker first)"

# 1. The registry, reachable from this machine as localhost:$REG_PORT.
if [[ "$(docker inspect -f '{{.State.Running}}' "$REG_NAME" 2>/dev/null || true)" != true ]]; then
    log "starting registry $REG_NAME on 127.0.0.1:$REG_PORT"
    docker rm -f "$REG_NAME" >/dev/null 2>&1 || true
    docker run -d --restart=always -p "127.0.0.1:${REG_PORT}:5000" --network bridge \
        --name "$REG_NAME" docker.io/library/registry:2 >/dev/null
fi

# 2. The cluster.
if ! kind get clusters 2>/dev/null | grep -qx "$CLUSTER_NAME"; then
    log "creating kind cluster $CLUSTER_NAME"
    kind create cluster --name "$CLUSTER_NAME" --config "$HERE/cluster.yaml" --wait 120s
fi
kubectl config use-context "kind-$CLUSTER_NAME" >/dev/null

# containerd on every node: localhost:$REG_PORT is served by the registry container.
registry_dir="/etc/containerd/certs.d/localhost:${REG_PORT}"
for node in $(kind get nodes --name "$CLUSTER_NAME"); do
    docker exec "$node" mkdir -p "$registry_dir"
    printf '[host."http://%s:5000"]\n' "$REG_NAME" | docker exec -i "$node" cp /dev/stdin "$registry_dir/hosts.toml"
done
if [[ "$(docker inspect -f '{{json .NetworkSettings.Networks.kind}}' "$REG_NAME")" == null ]]; then
    docker network connect kind "$REG_NAME"
fi
# Documents the registry for tools that look for it (KEP-1755).
kubectl apply -f - >/dev/null <<YAML
apiVersion: v1
kind: ConfigMap
metadata:
  name: local-registry-hosting
  namespace: kube-public
data:
  localRegistryHosting.v1: |
    host: "localhost:${REG_PORT}"
    help: "https://kind.sigs.k8s.io/docs/user/local-registry/"
YAML

# 3. Images.
if [[ "${SKIP_BUILD:-0}" != 1 ]]; then
    log "building $REGISTRY/tidescale:$TAG"
    docker build -t "$REGISTRY/tidescale:$TAG" --build-arg "VERSION=$TAG" "$REPO"
    docker push "$REGISTRY/tidescale:$TAG"
    log "building $WORKERS_IMAGE"
    docker build -f "$REPO/manifests/examples/workers/Dockerfile" -t "$WORKERS_IMAGE" "$REPO"
    docker push "$WORKERS_IMAGE"
fi

# 4. tidescale.
log "installing the chart (release tidescale, namespace keda)"
helm upgrade --install tidescale "$REPO/manifests/chart/tidescale" \
    --namespace keda --create-namespace \
    --set image.registry="$REGISTRY" \
    --set image.repository=tidescale \
    --set image.tag="$TAG" \
    --wait --timeout 5m

# 5. The RabbitMQ sample (image renamed to the tag just pushed).
log "deploying the RabbitMQ sample in namespace tidescale-demo"
workers="$REPO/manifests/examples/workers"
kubectl apply -f "$workers/namespace.yaml"
kubectl apply -f "$workers/rabbitmq/rabbitmq.yaml"
sed "s#localhost:5001/tidescale-sample-workers:[^[:space:]\"]*#$WORKERS_IMAGE#" \
    "$workers/rabbitmq/deployment.yaml" | kubectl apply -f -
kubectl apply -f "$workers/rabbitmq/scaledobject.yaml"
kubectl -n tidescale-demo rollout status deployment/rabbitmq --timeout=180s

cat >&2 <<DONE
[kind-up] ready. Make the worker scale from zero:
  kubectl apply -f manifests/examples/workers/rabbitmq/publish-job.yaml
  kubectl -n tidescale-demo get scaledobject,hpa,deploy -w
Tear down with manifests/provision/kind/down.sh
DONE
