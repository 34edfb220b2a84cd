#!/usr/bin/env bash
# Headless Chromium + chromedriver for tests/e2e/test_report_browser.py, from Debian's packages
# (never a downloaded browser build). Idempotent: apt-get runs only when a binary is missing.
# Needs root (CI and the dev machines run as root); about 2 minutes on a fresh machine.
set -eu
if [ -x /usr/bin/chromium ] && [ -x /usr/bin/chromedriver ]; then
    exit 0
fi
SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -q
$SUDO apt-get install -y -q --no-install-recommends chromium chromium-driver fonts-liberation
test -x /usr/bin/chromium && test -x /usr/bin/chromedriver
