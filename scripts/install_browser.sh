#!/usr/bin/env bash
# Install the browser that tests/test_browser.py drives: Debian's `chromium` package
# (Playwright from PyPI only drives it; the suite never runs `playwright install`).
# Needs root and apt-get (Debian; on Ubuntu `chromium` is a snap and will not do: point
# NVP_EDU_CHROMIUM at a Chrome/Chromium binary instead). The test calls this script
# itself when /usr/bin/chromium is missing.
set -euo pipefail
if [ -x /usr/bin/chromium ]; then
    echo "chromium already installed: $(/usr/bin/chromium --version 2>/dev/null || true)"
    exit 0
fi
if [ "$(id -u)" -ne 0 ]; then
    echo "error: installing chromium needs root (try: sudo bash $0)" >&2
    exit 1
fi
echo "==> apt-get install chromium (about 25-70 s)"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq chromium >/dev/null
/usr/bin/chromium --version 2>/dev/null || true
