#!/bin/sh
# Regenerates rbac-context.yaml from policies.yaml with `wasmhook manifests --rbac`: get,
# list and watch of exactly the kinds the policies declare under context:, so what the
# pods may read is reviewed in one file and never edited by hand. Run it after changing a
# policy's context: (tests/integration/deploy.rs fails until they agree):
#
#   deploy/base/generate-context-rbac.sh                  # builds and runs wasmhook with cargo
#   WASMHOOK=/path/to/wasmhook deploy/base/generate-context-rbac.sh
set -eu

root=$(cd "$(dirname "$0")/../.." && pwd)
cd "$root"
wasmhook=${WASMHOOK:-cargo run -q --bin wasmhook --}

# shellcheck disable=SC2086 # $wasmhook is a command line
$wasmhook manifests --rbac --config deploy/base/policies.yaml --namespace wasmhook-system --service wasmhook \
    >deploy/base/rbac-context.yaml.tmp
mv deploy/base/rbac-context.yaml.tmp deploy/base/rbac-context.yaml
echo "wrote deploy/base/rbac-context.yaml" >&2
