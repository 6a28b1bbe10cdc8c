#!/usr/bin/env bash
# What the test suite needs beyond the build: headless Chromium and its WebDriver (Debian's
# chromium and chromium-driver) for the browser tests, and qrencode, netpbm and mjpegtools to
# turn a ticket's QR code into the video file Chromium's fake camera plays at the door page.
# Skips what is already installed.
set -euo pipefail
if [ -x /usr/bin/chromium ] && [ -x /usr/bin/chromedriver ] && command -v qrencode >/dev/null \
    && command -v pngtopnm >/dev/null && command -v ppmtoy4m >/dev/null; then
    exit 0
fi
echo "[test-deps] installing chromium, chromium-driver, qrencode, netpbm, mjpegtools (apt)" >&2
sudo_cmd=""
[ "$(id -u)" -eq 0 ] || sudo_cmd="sudo"
$sudo_cmd apt-get update -qq
DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install -y -qq chromium chromium-driver qrencode netpbm \
    mjpegtools >/dev/null
