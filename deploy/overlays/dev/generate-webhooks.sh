#!/bin/sh
# Regenerates the dev overlay's webhooks.yaml from deploy/base/policies.yaml with
# `wasmhook manifests`, so the webhook configurations are never edited by hand. Run it
# after changing policies.yaml:
#
#   deploy/overlays/dev/generate-webhooks.sh              # builds and runs wasmhook with cargo
#   WASMHOOK=/path/to/wasmhook deploy/overlays/dev/generate-webhooks.sh
#
# No caBundle (`--self-registered`): the overlay's kustomization puts in the one from
# endpoint.env, and turns each Service reference into a URL.
set -eu

root=$(cd "$(dirname "$0")/../../.." && pwd)
cd "$root"
wasmhook=${WASMHOOK:-cargo run -q --bin wasmhook --}
generated=$(mktemp)
trap 'rm -f "$generated"' EXIT

# shellcheck disable=SC2086 # $wasmhook is a command line
$wasmhook manifests --config deploy/base/policies.yaml --namespace wasmhook-system --service wasmhook \
    --port 443 --self-registered >"$generated"

{
    cat <<'HEADER'
# The MutatingWebhookConfiguration and ValidatingWebhookConfiguration of
# deploy/base/policies.yaml, for the dev overlay (a server outside the cluster).
# GENERATED — do not edit: change policies.yaml and run deploy/overlays/dev/generate-webhooks.sh.
#
# No caBundle and Service references: kustomization.yaml puts in endpoint.env's caBundle
# and URL. In a cluster the pods register these same configurations themselves.
HEADER
    cat "$generated"
} >deploy/overlays/dev/webhooks.yaml.tmp
mv deploy/overlays/dev/webhooks.yaml.tmp deploy/overlays/dev/webhooks.yaml
echo "wrote deploy/overlays/dev/webhooks.yaml" >&2
