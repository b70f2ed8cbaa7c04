#!/usr/bin/env bash
# The real clients of tests/clients/: curl and jq (examples/clients/curl-tour.sh),
# Node.js (examples/clients/node-fetch.mjs), and newman (Postman's CLI runner,
# for examples/postman/) pinned in tools/node/package-lock.json and installed
# with `npm ci` into tools/node/node_modules (git-ignored). Each part is
# skipped when already there (newman: installed from the same lock file).
set -euo pipefail
cd "$(dirname "$0")/../.."
source scripts/setup.d/lib.sh

apt_install curl jq
if ! command -v node >/dev/null || ! command -v npm >/dev/null; then
  apt_install nodejs npm
fi

tools=tools/node
stamp=$tools/node_modules/.installed-from-lock
if [ -x $tools/node_modules/.bin/newman ] && [ -e $stamp ] && cmp -s $tools/package-lock.json $stamp; then
  exit 0
fi
(cd $tools && npm ci --no-audit --no-fund --loglevel=error >/dev/null)
cp $tools/package-lock.json $stamp
