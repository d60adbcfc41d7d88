#!/bin/sh
# Regenerates rbac-audit.yaml from deploy/base/policies.yaml with `wasmhook manifests
# --audit-rbac`: get and list of every resource the policies' rules select, of the kinds
# they declare under context: and of namespaces, and writing wasmhook audit's own
# PolicyReports — so what the audit CronJob may read is reviewed in one file and never
# edited by hand. Run it after changing a policy's rules or context:
# (tests/integration/deploy.rs fails until they agree):
#
#   deploy/components/audit/generate-audit-rbac.sh                  # builds and runs wasmhook with cargo
#   WASMHOOK=/path/to/wasmhook deploy/components/audit/generate-audit-rbac.sh
set -eu

root=$(cd "$(dirname "$0")/../../.." && pwd)
cd "$root"
wasmhook=${WASMHOOK:-cargo run -q --bin wasmhook --}

# shellcheck disable=SC2086 # $wasmhook is a command line
$wasmhook manifests --audit-rbac --config deploy/base/policies.yaml --namespace wasmhook-system --service wasmhook \
    >deploy/components/audit/rbac-audit.yaml.tmp
mv deploy/components/audit/rbac-audit.yaml.tmp deploy/components/audit/rbac-audit.yaml
echo "wrote deploy/components/audit/rbac-audit.yaml" >&2
