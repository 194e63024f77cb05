#!/usr/bin/env bash
# Builds this Python plugin into a WebAssembly component with componentize-py
# (pinned in requirements.txt, installed into ./.venv on first use).
#   ./build.sh [out.wasm]          see below for the WIT
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
out="$(realpath -m "${1:-$here/plugin.wasm}")"
# The WIT: $GATEHOUSE_WIT, else ./wit (a scaffolded plugin), else the repository's.
wit="${GATEHOUSE_WIT:-$here/wit}"
[ -d "$wit" ] || wit="$here/../../wit"
wit="$(realpath "$wit")"
venv="$here/.venv"
if [ ! -x "$venv/bin/componentize-py" ] || ! cmp -s "$here/requirements.txt" "$venv/.requirements"; then
    python3 -m venv "$venv"
    "$venv/bin/pip" install --quiet --disable-pip-version-check -r "$here/requirements.txt"
    cp "$here/requirements.txt" "$venv/.requirements"
fi
cd "$here"
"$venv/bin/componentize-py" -d "$wit" -w plugin componentize app -o "$out" >/dev/null
echo "wrote $out"
