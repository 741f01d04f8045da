#!/usr/bin/env bash
# Set up everything mcresolve's tests, demo and benchmarks need on a fresh machine:
# a virtualenv in .venv with the package (editable) and its extras. Idempotent.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
.venv/bin/python -m pip install -q --upgrade pip
.venv/bin/python -m pip install -q --disable-pip-version-check -e '.[test]'
