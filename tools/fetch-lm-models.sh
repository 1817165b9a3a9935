#!/bin/sh
# SPDX-License-Identifier: MIT
# Copyright (c) 2026 The libstill authors
# fetch-lm-models.sh -- copies the small models that `still lm` runs
# (tiny-lm, recall-lm: config.json, float16 safetensors shards, held-out
# text, README) from a local data directory into DEST, checking
# SHA256SUMS where the model has one.  For local runs only: make check
# builds its own random model and needs none of these files.
#
#   sh tools/fetch-lm-models.sh [SOURCE [DEST]]
#
# SOURCE defaults to ../shared/data beside the source tree, DEST to models.
set -eu
here=$(cd "$(dirname "$0")/.." && pwd)
src=${1:-$here/../shared/data}
dest=${2:-models}
found=0
for m in tiny-lm recall-lm; do
    [ -r "$src/$m/config.json" ] || { echo "fetch-lm-models: $src/$m: not found, skipped" >&2; continue; }
    mkdir -p "$dest/$m"
    for f in config.json README.md dump_text.txt SHA256SUMS "$src/$m"/*.safetensors; do
        f=$(basename "$f")
        [ -r "$src/$m/$f" ] && cp "$src/$m/$f" "$dest/$m/$f"
    done
    if [ -r "$dest/$m/SHA256SUMS" ]; then
        (cd "$dest/$m" && sha256sum --quiet -c SHA256SUMS) ||
            { echo "fetch-lm-models: $m: checksum mismatch" >&2; exit 1; }
    fi
    echo "$dest/$m"
    found=$((found + 1))
done
[ "$found" -gt 0 ] || { echo "fetch-lm-models: no model under $src" >&2; exit 1; }
