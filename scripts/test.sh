#!/usr/bin/env bash
# The whole test suite: set-up, lint (ruff), types (mypy strict on src/ and the storefront example),
# the built wheel (scripts/check-wheel.sh), then pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
# Debian's chromium (browser test) and haproxy (benchmark peer); no-op when installed.
bash scripts/install-debian-tools.sh chromium haproxy
paths=""
for d in src tests examples benchmarks; do [ -d "$d" ] && paths="$paths $d"; done
.venv/bin/ruff check $paths
.venv/bin/ruff format --check $paths
.venv/bin/mypy
# The built wheel: LICENSE and metadata, and its demo run from a fresh virtualenv.
bash scripts/check-wheel.sh
.venv/bin/pytest "$@"
