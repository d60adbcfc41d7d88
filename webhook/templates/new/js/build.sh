#!/bin/sh
# Builds build/policy.wasm from policy.js with jco (QuickJS backend), installed
# (pinned, see package.json) into $WASMHOOK_POLICY_TOOLS (default: .tools/ here)
# on first use.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
tools=${WASMHOOK_POLICY_TOOLS:-$here/.tools}
if [ ! -x "$tools/js/node_modules/.bin/jco" ]; then
    echo "installing jco and componentize-js from the npm registry into $tools/js"
    mkdir -p "$tools/js"
    cp "$here/package.json" "$tools/js/"
    (cd "$tools/js" && npm install --no-audit --no-fund)
fi
mkdir -p "$here/build"
# Synchronous exports: the component-model async ABI is not enabled in wasmhook.
"$tools/js/node_modules/.bin/jco" componentize "$here/policy.js" --wit "$here/wit" --world-name policy \
    --backend quickjs --backend-qjs-disable-async -o "$here/build/policy.wasm"
