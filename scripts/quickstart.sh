#!/usr/bin/env bash
# One command from a fresh Debian/Ubuntu checkout to a running bridge on embedded defaults:
# installs what is missing (Debian packages the tests use, npm dependencies), builds, starts.
set -euo pipefail
cd "$(dirname "$0")/.."

need_major=20 need_minor=19
if ! command -v node >/dev/null; then
  echo "Node.js ${need_major}.${need_minor} or newer is required: install it (for example from NodeSource or nvm), then run this again." >&2
  exit 2
fi
read -r major minor < <(node -p 'process.versions.node.split(".").slice(0,2).join(" ")')
if [ "$major" -lt "$need_major" ] || { [ "$major" -eq "$need_major" ] && [ "$minor" -lt "$need_minor" ]; }; then
  echo "Node.js $(node --version) is too old: interop-bridge needs ${need_major}.${need_minor} or newer." >&2
  exit 2
fi
for tool in make g++ python3; do
  if ! command -v "$tool" >/dev/null; then
    echo "$tool is missing: better-sqlite3 is compiled at install time. Install it with: sudo apt-get install build-essential python3" >&2
    exit 2
  fi
done

bash scripts/install-system-deps.sh
npm ci
exec node dist/src/cli.js start "$@"
