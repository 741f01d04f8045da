#!/usr/bin/env bash
# The failover benchmark in one command: set-up (venv with mcresolve and its bench extra, Debian's haproxy),
# the full run, and the results written to
# benchmarks/failover/results/full/ (results.json, results.md, one timeline PNG per scenario).
# Extra arguments go to the runner, e.g. `scripts/bench.sh --quick` or `--scenarios node-kill`.
# See docs/benchmarks.md.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
bash scripts/install-debian-tools.sh haproxy
exec .venv/bin/python -m benchmarks.failover "$@"
