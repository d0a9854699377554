#!/usr/bin/env bash
# Install the headless browser used by the JupyterLab UI test (tests/ui).
#
# Chromium comes from the Debian package (Playwright's own browser download needs network access to its CDN,
# which the build machines do not have); Playwright drives it through `executable_path`.
# Idempotent and quiet: does nothing when a `chromium` binary is already on PATH.
set -euo pipefail

if command -v chromium >/dev/null 2>&1; then
    exit 0
fi

if ! command -v apt-get >/dev/null 2>&1; then
    echo "install_browser.sh: 'chromium' is not on PATH and apt-get is unavailable;" \
        "install Chromium with your system's package manager (the UI tests need a 'chromium' binary)." >&2
    exit 1
fi

SUDO=""
if [ "$(id -u)" -ne 0 ]; then
    if command -v sudo >/dev/null 2>&1; then
        SUDO="sudo"
    else
        echo "install_browser.sh: installing Chromium needs root (or sudo); run: apt-get install -y chromium" >&2
        exit 1
    fi
fi

echo "install_browser.sh: installing Chromium from the Debian package (about 20 s, once)"
export DEBIAN_FRONTEND=noninteractive
LOG="$(mktemp)"
trap 'rm -f "$LOG"' EXIT
if ! { $SUDO apt-get update -qq && $SUDO apt-get install -y -qq --no-install-recommends chromium; } >"$LOG" 2>&1; then
    tail -n 30 "$LOG" >&2
    echo "install_browser.sh: apt-get could not install chromium (see the log above)" >&2
    exit 1
fi
command -v chromium >/dev/null 2>&1 || { echo "install_browser.sh: chromium still not on PATH after install" >&2; exit 1; }
