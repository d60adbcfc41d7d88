#!/bin/sh
# Regenerates webhooks.yaml from policies.yaml with `wasmhook manifests`, so the webhook
# configurations are never edited by hand. Run it after changing policies.yaml:
#
#   deploy/base/generate-webhooks.sh                      # builds and runs wasmhook with cargo
#   WASMHOOK=/path/to/wasmhook deploy/base/generate-webhooks.sh
#
# The base carries no caBundle (`--self-registered`): the pods fill it in themselves
# (`serve --register --ca-bundle /tls/ca.crt`). The cert-manager overlay adds the
# inject-ca-from annotation instead.
set -eu

root=$(cd "$(dirname "$0")/../.." && pwd)
cd "$root"
wasmhook=${WASMHOOK:-cargo run -q --bin wasmhook --}
generated=$(mktemp)
trap 'rm -f "$generated"' EXIT

# shellcheck disable=SC2086 # $wasmhook is a command line
$wasmhook manifests --config deploy/base/policies.yaml --namespace wasmhook-system --service wasmhook \
    --port 443 --self-registered >"$generated"

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
    cat "$generated"
} >deploy/base/webhooks.yaml.tmp
mv deploy/base/webhooks.yaml.tmp deploy/base/webhooks.yaml
echo "wrote deploy/base/webhooks.yaml" >&2
