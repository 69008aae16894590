#!/usr/bin/env bash
# One-off: joins the per-layer fragments in docs/protocol/ into docs/PROTOCOL.md.
set -euo pipefail
cd "$(dirname "$0")/.."
out=docs/PROTOCOL.md
: > "$out"
for f in docs/protocol/*.md; do
  cat "$f" >> "$out"
  printf '\n' >> "$out"
done
