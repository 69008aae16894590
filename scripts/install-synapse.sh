#!/usr/bin/env bash
# Installs Synapse, the Matrix homeserver the Matrix tests and `npm run demo -- --matrix` run
# against, into a virtual environment inside the checkout (.synapse/, ignored by git). Pinned;
# an existing environment with the pinned version is reused. Needs python3 (3.9 or later) with
# venv, and Python's package index.
set -euo pipefail
cd "$(dirname "$0")/.."

SYNAPSE_VERSION="1.163.2"
venv=".synapse"

if [ -x "$venv/bin/python" ] &&
  [ "$("$venv/bin/python" -c 'from importlib.metadata import version; print(version("matrix-synapse"))' 2>/dev/null)" = "$SYNAPSE_VERSION" ]; then
  exit 0
fi

if ! python3 -c 'import venv, ensurepip' 2>/dev/null; then
  SUDO=""
  [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends python3-venv >/dev/null
fi

rm -rf "$venv"
python3 -m venv "$venv"
"$venv/bin/pip" install --quiet --disable-pip-version-check "matrix-synapse==$SYNAPSE_VERSION"
echo "installed: Synapse $SYNAPSE_VERSION in $venv/"
