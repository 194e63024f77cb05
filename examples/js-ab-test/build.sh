#!/usr/bin/env bash
# Builds this JavaScript plugin into a WebAssembly component: installs the
# pinned toolchain from package-lock.json on first use, then runs build.mjs.
#   ./build.sh [out.wasm] [plugin.js]      see below for the WIT
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
out="$(realpath -m "${1:-$here/plugin.wasm}")"
src="$(realpath "${2:-$here/plugin.js}")"
# The WIT: $GATEHOUSE_WIT, else ./wit (a scaffolded plugin), else the repository's.
wit="${GATEHOUSE_WIT:-$here/wit}"
[ -d "$wit" ] || wit="$here/../../wit"
export GATEHOUSE_WIT="$(realpath "$wit")"
command -v node >/dev/null || { echo "build.sh: node and npm are needed (apt-get install nodejs npm)" >&2; exit 1; }
if [ ! -f "$here/node_modules/.package-lock.json" ] || [ "$here/package-lock.json" -nt "$here/node_modules/.package-lock.json" ]; then
    # `npm install` from the lockfile rather than `npm ci`: npm ci rejects this
    # lockfile because some optional per-platform binaries of the toolchain are
    # not published (npm/cli#4828); the versions installed are the locked ones.
    (cd "$here" && npm install --no-save --no-audit --no-fund --loglevel=error)
fi
cd "$here"
node build.mjs "$src" "$out"
