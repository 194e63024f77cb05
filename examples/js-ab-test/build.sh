#!/usr/bin/env bash
# Builds this JavaScript plugin into a WebAssembly component: installs the
# pinned toolchain from package-lock.json on first use, then runs build.mjs.
#   ./build.sh [out.wasm] [plugin.js]      WIT from $GATEHOUSE_WIT or ./wit
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
out="$(realpath -m "${1:-$here/plugin.wasm}")"
src="$(realpath "${2:-$here/plugin.js}")"
export GATEHOUSE_WIT="$(realpath "${GATEHOUSE_WIT:-$here/wit}")"
command -v node >/dev/null || { echo "build.sh: node and npm are needed (apt-get install nodejs npm)" >&2; exit 1; }
if [ ! -f "$here/node_modules/.package-lock.json" ] || [ "$here/package-lock.json" -nt "$here/node_modules/.package-lock.json" ]; then
    (cd "$here" && npm ci --no-audit --no-fund --loglevel=error)
fi
cd "$here"
node build.mjs "$src" "$out"
