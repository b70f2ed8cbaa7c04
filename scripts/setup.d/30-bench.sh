#!/usr/bin/env bash
# nginx and wrk for the benchmark (bench/), valgrind for its instruction
# counts (bench/instructions.py), and their smoke tests
# (tests/test_bench_smoke.py): Debian's packages, used only as binaries. The
# benchmark starts its own nginx on free loopback ports with its own config,
# so the system service the package may start is stopped and disabled here.
# mitmproxy and matplotlib are not installed here: only a full benchmark run
# needs them, and bench/run puts them in bench/.venv-mitm itself.
set -euo pipefail
cd "$(dirname "$0")/../.."
source scripts/setup.d/lib.sh

if command -v nginx >/dev/null && command -v wrk >/dev/null && command -v valgrind >/dev/null; then
  exit 0
fi
apt_install nginx-light wrk valgrind
if command -v systemctl >/dev/null && systemctl is-active --quiet nginx 2>/dev/null; then
  systemctl disable --now nginx >/dev/null 2>&1 || true
elif command -v service >/dev/null; then
  service nginx stop >/dev/null 2>&1 || true
fi
