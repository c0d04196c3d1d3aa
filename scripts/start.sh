#!/usr/bin/env bash
# The README's "run it" command (npm start -- [serve flags]): install, build, serve.
set -euo pipefail
cd "$(dirname "$0")/.."
[ -x node_modules/.bin/bun ] || npm install --no-audit --no-fund
./compile.sh >&2
exec dist/strata serve "$@"
