#!/usr/bin/env bash
# The failover benchmark in one command: set-up (venv with mcresolve, Debian's haproxy,
# matplotlib and multiminio), the full run, and the results written to
# benchmarks/failover/results/full/ (results.json, results.md, one timeline PNG per scenario).
# Extra arguments go to the runner, e.g. `scripts/bench.sh --quick` or `--scenarios node-kill`.
# See docs/benchmarks.md.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
if ! command -v haproxy >/dev/null 2>&1 && [ ! -x /usr/sbin/haproxy ]; then
  SUDO=""
  [ "$(id -u)" = 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq haproxy
fi
.venv/bin/python -m pip install -q --disable-pip-version-check "matplotlib>=3.8" "multiminio>=1.0.2"
exec .venv/bin/python -m benchmarks.failover "$@"
