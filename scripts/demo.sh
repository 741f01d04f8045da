#!/usr/bin/env bash
# The main job: set up .venv with only what the demo needs (the `demo` extra), then bring up the
# emulated multi-cloud topology and run the demo. Arguments go to the demo (see --help).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh demo
exec .venv/bin/python -m mcresolve.demo "$@"
