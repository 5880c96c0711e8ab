#!/usr/bin/env bash
# Install Debian's Chromium and ChromeDriver for the web-page test, if missing.
exec "$(dirname "$0")/ensure-debs.sh" "Chromium for the web-page test" chromium chromium-driver
