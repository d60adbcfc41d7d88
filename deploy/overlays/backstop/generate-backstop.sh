#!/bin/sh
# Regenerates the backstop overlay's backstop.yaml from its policies.yaml with
# `wasmhook manifests --backstop`, so the ValidatingAdmissionPolicies are never edited by
# hand. Run it after changing policies.yaml:
#
#   deploy/overlays/backstop/generate-backstop.sh              # builds and runs wasmhook with cargo
#   WASMHOOK=/path/to/wasmhook deploy/overlays/backstop/generate-backstop.sh
#   BACKSTOP_API_VERSION=v1beta1 deploy/overlays/backstop/generate-backstop.sh   # Kubernetes 1.28-1.29
set -eu

root=$(cd "$(dirname "$0")/../../.." && pwd)
cd "$root"
wasmhook=${WASMHOOK:-cargo run -q --bin wasmhook --}
out=deploy/overlays/backstop/backstop.yaml

# shellcheck disable=SC2086 # $wasmhook is a command line
$wasmhook manifests --backstop --backstop-api-version "${BACKSTOP_API_VERSION:-v1}" \
    --config deploy/overlays/backstop/policies.yaml --namespace wasmhook-system --service wasmhook \
    --output "$out.tmp"
mv "$out.tmp" "$out"
echo "wrote $out" >&2
