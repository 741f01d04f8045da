#!/usr/bin/env bash
# Install Debian's chromium for the headless browser test (tests/browser/). Idempotent: does
# nothing when /usr/bin/chromium is already there. The test drives chromium through the Chrome
# DevTools Protocol itself, so chromium-driver (WebDriver) is not needed.
# Runs apt-get as root, or through sudo when not root. Fails loudly when installation fails.
set -euo pipefail

CHROMIUM=/usr/bin/chromium

if [ -x "$CHROMIUM" ]; then
  exit 0
fi

fail() {
  echo "install-browser.sh: ERROR: $*" >&2
  echo "install-browser.sh: the browser test (tests/browser/) needs $CHROMIUM;" \
       "install Debian's 'chromium' package by hand and re-run." >&2
  exit 1
}

if ! command -v apt-get >/dev/null 2>&1; then
  fail "apt-get not found (this script supports Debian/Ubuntu only)"
fi

SUDO=()
if [ "$(id -u)" -ne 0 ]; then
  command -v sudo >/dev/null 2>&1 || fail "not root and sudo is not available"
  SUDO=(sudo)
fi

echo "install-browser.sh: installing chromium (apt-get)..."
log=$(mktemp)
trap 'rm -f "$log"' EXIT
export DEBIAN_FRONTEND=noninteractive
if ! "${SUDO[@]}" apt-get update -qq >"$log" 2>&1; then
  cat "$log" >&2
  fail "apt-get update failed (output above)"
fi
if ! "${SUDO[@]}" apt-get install -y -qq --no-install-recommends chromium >"$log" 2>&1; then
  tail -n 40 "$log" >&2
  fail "apt-get install chromium failed (output above)"
fi
if [ ! -x "$CHROMIUM" ]; then
  fail "apt-get reported success but $CHROMIUM is missing"
fi
echo "install-browser.sh: $("$CHROMIUM" --version 2>/dev/null || echo chromium) installed"
