#!/usr/bin/env bash
# The main job: bring up the emulated multi-cloud topology and run the demo.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .venv/bin/python -m mcresolve.demo "$@"
