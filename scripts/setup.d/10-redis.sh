#!/usr/bin/env bash
# redis-server for the fleet tests (tests/fleet/): Debian's package, used only
# as a binary. The tests start their own server on a free port, so the system
# service the package may start is stopped and disabled here.
set -euo pipefail
cd "$(dirname "$0")/../.."
source scripts/setup.d/lib.sh

if command -v redis-server >/dev/null; then
  exit 0
fi
apt_install redis-server
# Packages may start the service (with or without systemd); the tests never use it.
if command -v systemctl >/dev/null && systemctl is-active --quiet redis-server 2>/dev/null; then
  systemctl disable --now redis-server >/dev/null 2>&1 || true
elif command -v service >/dev/null; then
  service redis-server stop >/dev/null 2>&1 || true
fi
