#!/usr/bin/env bash
# Build dist/strata: one self-contained executable (Bun runtime + the bundled source).
set -euo pipefail
cd "$(dirname "$0")"
[ -x node_modules/.bin/bun ] || npm ci --no-audit --no-fund
commit=$(git rev-parse --short HEAD 2>/dev/null || echo unknown)
mkdir -p dist
node_modules/.bin/bun build --compile --minify --sourcemap \
  --define "STRATA_COMMIT=\"$commit\"" \
  --outfile dist/strata src/main.bun.ts
echo "built dist/strata ($(du -h dist/strata | cut -f1), commit $commit)"
