#!/usr/bin/env bash
# One command from a fresh Debian/Ubuntu checkout to a built bridge: installs what is missing
# (Prosody and ejabberd from Debian, Synapse into .synapse/, the npm dependencies) and builds. Then
# `npm run demo` (XMPP) or `npm run demo -- --matrix` tries it end to end. With --start, it also starts the bridge on embedded defaults (Ctrl-C stops it).
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
bash scripts/install-synapse.sh
npm ci
if [ "${1:-}" = "--start" ]; then
  shift
  exec node dist/app/cli.js start "$@"
fi
echo
echo "interop-bridge is built. Next:"
echo "  npm run demo      a private Prosody, the gateway emulator with two simulated WhatsApp users, and the bridge"
echo "  npm run demo -- --matrix   the same with a private Synapse, for any Matrix client"
echo "  npm test          the whole test suite"
echo "  docs/OPERATING.md to run it next to your own Synapse, Prosody or ejabberd"
