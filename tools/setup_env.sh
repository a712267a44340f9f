#!/usr/bin/env bash
# Create .venv (if missing) and install capdistill with its test extras, pinned by
# requirements/constraints.txt. Safe to run again: it does nothing when up to date.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
STAMP=.venv/.capdistill-installed
WANT=$(cat setup.py requirements/constraints.txt | sha1sum | cut -d' ' -f1)
if [ -x .venv/bin/python ] && [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$WANT" ]; then
    exit 0
fi
[ -x .venv/bin/python ] || "$PY" -m venv .venv
# torch is pinned in the same call (constraints): an unpinned torch pulls a CUDA build.
.venv/bin/python -m pip install --quiet --disable-pip-version-check \
    -c requirements/constraints.txt -e '.[tests]'
echo "$WANT" > "$STAMP"
