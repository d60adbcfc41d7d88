#!/bin/sh
# Regenerates webhooks.yaml from policies.yaml with `wasmhook manifests`, so the webhook
# configurations are never edited by hand. Run it after changing policies.yaml:
#
#   deploy/base/generate-webhooks.sh                      # builds and runs wasmhook with cargo
#   WASMHOOK=/path/to/wasmhook deploy/base/generate-webhooks.sh
#
# `wasmhook manifests` always writes a way to trust the serving certificate (--ca-bundle
# or --cert-manager). The base has neither on purpose — the pods fill in the caBundle
# (`serve --register --ca-bundle /tls/ca.crt`) — so this generates the cert-manager form
# and removes its one trace, the cert-manager.io/inject-ca-from annotation. The
# cert-manager overlay patches that annotation back.
set -eu

root=$(cd "$(dirname "$0")/../.." && pwd)
cd "$root"
wasmhook=${WASMHOOK:-cargo run -q --bin wasmhook --}
generated=$(mktemp)
trap 'rm -f "$generated"' EXIT

# shellcheck disable=SC2086 # $wasmhook is a command line
$wasmhook manifests --config deploy/base/policies.yaml --namespace wasmhook-system --service wasmhook \
    --port 443 --cert-manager wasmhook-system/wasmhook >"$generated"

# Both configurations carry the annotation (two lines each); anything else means the
# generator's output changed shape and this script must be looked at.
removed=$(grep -c -e '^  annotations:$' -e '^    cert-manager\.io/inject-ca-from: wasmhook-system/wasmhook$' "$generated" || true)
if [ "$removed" -ne 4 ]; then
    echo "error: expected the inject-ca-from annotation on both configurations, found $removed matching lines" >&2
    exit 1
fi

{
    cat <<'HEADER'
# The MutatingWebhookConfiguration and ValidatingWebhookConfiguration of policies.yaml.
# GENERATED — do not edit: change policies.yaml and run deploy/base/generate-webhooks.sh.
#
# No caBundle: the Deployment runs `wasmhook serve --register --ca-bundle /tls/ca.crt`, and
# each pod server-side-applies these same configurations with the caBundle filled in from
# the mounted Secret at start-up (and again when the Secret rotates). Until the first pod
# has done so, the API server cannot verify wasmhook's certificate and, with failurePolicy
# Fail, refuses the requests these webhooks match — see "Deploy to a cluster" in README.md.
HEADER
    grep -v -e '^  annotations:$' -e '^    cert-manager\.io/inject-ca-from: ' "$generated"
} >deploy/base/webhooks.yaml.tmp
mv deploy/base/webhooks.yaml.tmp deploy/base/webhooks.yaml
echo "wrote deploy/base/webhooks.yaml" >&2
