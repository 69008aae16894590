#!/usr/bin/env bash
# Installs the Debian packages the tests use: Prosody (with prosody-modules, for mod_privilege: the
# XEP-0402 bookmarks test), ejabberd and PostgreSQL (the tests start
# their own instances on loopback with generated configs, so the packaged services are kept from
# starting; test/support/postgres.ts runs PostgreSQL's binaries as the `postgres` user the package
# creates); prometheus for promtool (the alerting rules' tests; its service is kept from starting
# too); chromium for the browser demo's test (playwright-core drives /usr/bin/chromium).
set -euo pipefail

packages=(prosody prosody-modules ejabberd postgresql prometheus chromium)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0

SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"
export DEBIAN_FRONTEND=noninteractive

# Keep the packaged daemons from starting: the tests run their own instances.
policy=/usr/sbin/policy-rc.d
created_policy=0
if [ ! -e "$policy" ]; then
  printf '#!/bin/sh\nexit 101\n' | $SUDO tee "$policy" >/dev/null
  $SUDO chmod +x "$policy"
  created_policy=1
fi
trap '[ $created_policy -eq 1 ] && $SUDO rm -f "$policy"' EXIT

$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
echo "installed: ${missing[*]}"
