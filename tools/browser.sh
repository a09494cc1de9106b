#!/usr/bin/env bash
# Make a Chromium ready for the browser tests of the widgets (tests/test_browser.py).
# Playwright drives the system Chromium (its own browser download is not used), so this installs
# Debian's `chromium` package when no Chromium is on the PATH: as root directly, otherwise through sudo.
set -euo pipefail
for name in chromium chromium-browser google-chrome; do
  if command -v "$name" >/dev/null 2>&1; then exit 0; fi
done
if ! command -v apt-get >/dev/null 2>&1; then
  echo "tools/browser.sh: the browser tests need Chromium and this system has no apt-get; install Chromium with your package manager" >&2
  exit 1
fi
SUDO=""
if [ "$(id -u)" -ne 0 ]; then
  if command -v sudo >/dev/null 2>&1; then SUDO="sudo"; else
    echo "tools/browser.sh: the browser tests need Chromium; run 'apt-get install -y chromium' as root (no sudo here)" >&2; exit 1
  fi
fi
echo "Installing Chromium (apt-get install chromium) for the browser tests (first time only)"
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq chromium >/dev/null
command -v chromium >/dev/null 2>&1 || { echo "tools/browser.sh: installing chromium did not put 'chromium' on the PATH" >&2; exit 1; }
