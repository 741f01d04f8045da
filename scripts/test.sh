#!/usr/bin/env bash
# The whole test suite: set-up, lint (ruff), types (mypy strict on src/), then pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
.venv/bin/ruff check src tests examples benchmarks
.venv/bin/ruff format --check src tests examples benchmarks
.venv/bin/mypy
.venv/bin/pytest "$@"
