#!/usr/bin/env bash
# Set up a virtualenv in .venv with the package (editable) and one of its extras, showing what it
# installs and the elapsed time. Idempotent: an extra already installed from the same
# pyproject.toml/setup.py is not installed again.
#   scripts/setup.sh          # the `test` extra: everything the tests, the demo and the benchmark need
#   scripts/setup.sh demo     # only what the demo needs (scripts/demo.sh)
#   scripts/setup.sh bench    # what the benchmark needs (scripts/bench.sh)
# Extras only add packages, so any order works on a shared .venv (demo then test, or test then demo).
set -euo pipefail
cd "$(dirname "$0")/.."
EXTRA=${1:-test}
PY=${PYTHON:-python3}
START=$SECONDS
say() { printf 'setup [%3ds] %s\n' "$((SECONDS - START))" "$*"; }

if [ ! -x .venv/bin/python ]; then
  say "creating the virtualenv .venv ($("$PY" --version 2>&1))"
  "$PY" -m venv .venv
  say "upgrading pip"
  .venv/bin/python -m pip install -q --disable-pip-version-check --upgrade pip
fi

stamp=".venv/.mcresolve-$EXTRA"
digest=$(cat pyproject.toml $([ -f setup.py ] && echo setup.py) | sha256sum | cut -c1-16)
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$digest" ] && .venv/bin/python -c 'import mcresolve' 2>/dev/null; then
  say "mcresolve[$EXTRA] already installed in .venv (pyproject.toml unchanged)"
  exit 0
fi

say "installing mcresolve[$EXTRA] (editable) and its dependencies into .venv; pip's steps follow"
log=$(mktemp)
trap 'rm -f "$log"' EXIT
# pip's own lines, shortened, with the elapsed time: what it downloads and installs.
if ! PYTHONUNBUFFERED=1 .venv/bin/python -m pip install --disable-pip-version-check --progress-bar off \
    -e ".[$EXTRA]" 2>&1 | tee "$log" | while IFS= read -r line; do
      case "$line" in
        Collecting*|"Installing collected"*|"Successfully installed"*|"  Building"*|"Building editable"*)
          say "  ${line:0:100}$([ ${#line} -gt 100 ] && echo ...)" ;;
      esac
    done; then
  tail -n 30 "$log" >&2
  say "ERROR: pip install -e .[$EXTRA] failed (output above)"
  exit 1
fi
if ! .venv/bin/python -c 'import mcresolve' 2>/dev/null; then
  tail -n 30 "$log" >&2
  say "ERROR: pip install -e .[$EXTRA] did not install mcresolve (output above)"
  exit 1
fi
echo "$digest" >"$stamp"
say "done: mcresolve[$EXTRA] in .venv ($(du -sh .venv | cut -f1))"
