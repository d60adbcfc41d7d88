#!/bin/sh
# Builds build/policy.wasm from app.py with componentize-py, installed (pinned)
# into $WASMHOOK_POLICY_TOOLS (default: .tools/ here) on first use.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
tools=${WASMHOOK_POLICY_TOOLS:-$here/.tools}
if [ ! -x "$tools/python/bin/componentize-py" ]; then
    echo "installing {{componentize_py}} from PyPI into $tools/python"
    python3 -m venv "$tools/python"
    "$tools/python/bin/pip" install --quiet {{componentize_py}}
fi
# componentize-py bundles everything on its search path: build from a clean copy.
clean=$(mktemp -d)
trap 'rm -rf "$clean"' EXIT
cp "$here"/*.py "$clean"/
mkdir -p "$here/build"
cd "$clean"
"$tools/python/bin/componentize-py" -d "$here/wit" -w policy componentize app -p "$clean" -o "$here/build/policy.wasm"
