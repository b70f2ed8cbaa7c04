#!/usr/bin/env bash
# A C compiler and Python's headers for the compiled wheel (scripts/wheel,
# mypyc), which the test suite tests as well: Debian's gcc, and python3-dev
# when the python3 in use is Debian's own (pyenv and python.org builds ship
# their headers).
set -euo pipefail
cd "$(dirname "$0")/../.."
source scripts/setup.d/lib.sh

headers="$(python3 -c 'import sysconfig; print(sysconfig.get_paths()["include"])')/Python.h"
command -v cc >/dev/null || apt_install gcc libc6-dev
[ -e "$headers" ] || apt_install python3-dev
