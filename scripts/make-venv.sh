#!/usr/bin/env bash
# Creates the project's Python environment in .venv from requirements/dev.txt.
# Usage: scripts/make-venv.sh VENV_DIR
set -euo pipefail

venv=${1:?usage: make-venv.sh VENV_DIR}
here=$(cd "$(dirname "$0")/.." && pwd)

if [[ ! -x $venv/bin/python ]]; then
  echo "==> Creating the Python environment $venv"
  python3 -m venv "$venv"
fi
echo "==> Installing Python packages from requirements/dev.txt"
"$venv/bin/pip" install --quiet --disable-pip-version-check \
  -r "$here/requirements/dev.txt"
touch "$venv/.installed"
