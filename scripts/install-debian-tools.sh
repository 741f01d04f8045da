#!/usr/bin/env bash
# Install the Debian packages the tests and the benchmark drive as real programs, when missing:
#   chromium  -> /usr/bin/chromium   (headless browser test, tests/browser/)
#   haproxy   -> /usr/sbin/haproxy   (the load-balancer peer of the failover benchmark)
# Usage: scripts/install-debian-tools.sh [chromium] [haproxy]   (default: both)
# Idempotent: does nothing for packages already installed; one `apt-get update` at most.
# Runs apt-get as root, or through sudo when not root. Fails loudly when installation fails.
set -euo pipefail

declare -A BINARY=([chromium]=/usr/bin/chromium [haproxy]=/usr/sbin/haproxy)
wanted=("$@")
[ ${#wanted[@]} -gt 0 ] || wanted=(chromium haproxy)

fail() {
  echo "install-debian-tools.sh: ERROR: $*" >&2
  echo "install-debian-tools.sh: install Debian's package(s) ${wanted[*]} by hand and re-run." >&2
  exit 1
}

missing=()
for package in "${wanted[@]}"; do
  binary=${BINARY[$package]:-}
  [ -n "$binary" ] || fail "unknown package '$package' (known: ${!BINARY[*]})"
  [ -x "$binary" ] || missing+=("$package")
done
[ ${#missing[@]} -gt 0 ] || exit 0

command -v apt-get >/dev/null 2>&1 || fail "apt-get not found (this script supports Debian/Ubuntu only)"
SUDO=()
if [ "$(id -u)" -ne 0 ]; then
  command -v sudo >/dev/null 2>&1 || fail "not root and sudo is not available"
  SUDO=(sudo)
fi

echo "install-debian-tools.sh: installing ${missing[*]} (apt-get)..."
log=$(mktemp)
trap 'rm -f "$log"' EXIT
export DEBIAN_FRONTEND=noninteractive
if ! "${SUDO[@]}" apt-get update -qq >"$log" 2>&1; then
  cat "$log" >&2
  fail "apt-get update failed (output above)"
fi
# --no-install-recommends keeps chromium from pulling in udev, upower and mesa.
if ! "${SUDO[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}" >"$log" 2>&1; then
  tail -n 40 "$log" >&2
  fail "apt-get install ${missing[*]} failed (output above)"
fi
for package in "${missing[@]}"; do
  [ -x "${BINARY[$package]}" ] || fail "apt-get reported success but ${BINARY[$package]} is missing"
done
echo "install-debian-tools.sh: ${missing[*]} installed"
