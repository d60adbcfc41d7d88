#!/bin/sh
# Builds build/policy.wasm: the crate compiled for wasm32-wasip2.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
cd "$here"
rustup target list --installed | grep -qx wasm32-wasip2 || rustup target add wasm32-wasip2
cargo build --release --target wasm32-wasip2
mkdir -p build
cp "${CARGO_TARGET_DIR:-target}/wasm32-wasip2/release/{{crate_name}}.wasm" build/policy.wasm
