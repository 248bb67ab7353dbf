#!/usr/bin/env bash
# Debian's chromium and chromium-driver for the web console's browser tests
# (tests/browser.rs): installed from Debian's packages, never a browser
# download. Idempotent: does nothing when both are there.
set -euo pipefail
if [ -x /usr/bin/chromedriver ] && [ -x /usr/bin/chromium ]; then
    exit 0
fi
sudo=""
[ "$(id -u)" -eq 0 ] || sudo="sudo"
echo "[chromium] installing chromium and chromium-driver (Debian packages)" >&2
$sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver >/dev/null 2>&1 || {
    $sudo env DEBIAN_FRONTEND=noninteractive apt-get update -qq
    $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver >/dev/null
}
