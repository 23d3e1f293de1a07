#!/usr/bin/env bash
# Debian's chromium for the page's browser tests (Playwright drives it through its
# executable_path; no browser is downloaded). Idempotent.
set -euo pipefail
if command -v chromium >/dev/null; then
  exit 0
fi
echo "[chromium] installing chromium from Debian's packages" >&2
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq chromium >/dev/null
