#!/usr/bin/env bash
# The schemas deploy/k8s/validate.py checks the manifests against, from the Go module proxy:
# Kubernetes' own OpenAPI documents (k8s.io/kubernetes, api/openapi-spec/v3) and the CRDs of KEDA
# and of the MongoDB community operator. Idempotent; prints nothing when they are there.
set -euo pipefail
export GOFLAGS=-mod=mod
modules=(
  k8s.io/kubernetes@v1.34.4
  github.com/kedacore/keda/v2@v2.21.0
  github.com/mongodb/mongodb-kubernetes-operator@v0.9.0
)
cache=$(go env GOMODCACHE)
for module in "${modules[@]}"; do
  [ -d "$cache/$module" ] && continue
  echo "[k8s] fetching the schemas in $module" >&2
  (cd "$(mktemp -d)" && go mod download "$module")
done
