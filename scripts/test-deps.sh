#!/usr/bin/env bash
# What the test suite needs beyond the build: headless Chromium and its WebDriver (Debian's
# chromium and chromium-driver) for the browser tests. Skips what is already installed.
set -euo pipefail
if [ -x /usr/bin/chromium ] && [ -x /usr/bin/chromedriver ]; then
    exit 0
fi
echo "[test-deps] installing chromium and chromium-driver (apt)" >&2
sudo_cmd=""
[ "$(id -u)" -eq 0 ] || sudo_cmd="sudo"
$sudo_cmd apt-get update -qq
DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install -y -qq chromium chromium-driver >/dev/null
