#!/usr/bin/env bash
# Runs containerd's own snapshotter test suite (snapshots/testsuite.SnapshotterSuite, unmodified)
# through the proxy snapshotter over gRPC on a unix socket: test/snapshotter-suite/suite_test.go.
#
#   bash scripts/snapshotter-suite.sh baseline
#       containerd's overlay snapshotter, served in-process: shows the suite works on this machine.
#   bash scripts/snapshotter-suite.sh strata <driver> <executable> [extra args...]
#       a process per suite case: <executable> [extra args...] snapshotter --driver <driver>
#       --root <caseRoot>/store --socket <caseRoot>/strata.sock --log-level warn
#       e.g. strata overlay node_modules/.bin/bun src/main.bun.ts (relative paths: from the repo root)
#
# Needs root, golang-go and golang-github-containerd-containerd-dev (Debian's Go sources, built in
# GOPATH mode, offline). Builds the test binary once into a temp dir, streams its -test.v output and
# ends with "N passed, N failed[, N skipped]" over the suite's cases. Exits non-zero when a case
# fails or the suite cannot run at all (a missing tool counts as a failure, never as a skip).
# SNAPSHOTTER_SUITE_TIMEOUT (default 10m) bounds the run; SNAPSHOTTER_SUITE_GOPATH (default
# /usr/share/gocode, Debian's) is where the Go sources are.
set -euo pipefail

usage() {
  echo "usage: bash scripts/snapshotter-suite.sh baseline" >&2
  echo "       bash scripts/snapshotter-suite.sh strata <driver> <executable> [extra args...]" >&2
}

# Cannot run: say why, and close with a line the test runner counts as a failure.
fail() {
  echo "snapshotter-suite: $*" >&2
  echo "0 passed, 1 failed"
  exit 1
}

mode=${1:-}
case "$mode" in
  baseline)
    [ "$#" -eq 1 ] || { usage; exit 2; }
    ;;
  strata)
    [ "$#" -ge 3 ] || { usage; exit 2; }
    ;;
  *)
    usage
    exit 2
    ;;
esac

cd "$(dirname "$0")/.."
repo=$(pwd)

[ "$(id -u)" = 0 ] || fail "must run as root: the suite mounts the overlay filesystems the snapshotter returns"
command -v go >/dev/null || fail "go is missing: install golang-go and golang-github-containerd-containerd-dev (apt-get install -y golang-go golang-github-containerd-containerd-dev)"

gopath=${SNAPSHOTTER_SUITE_GOPATH:-/usr/share/gocode}
[ -d "$gopath/src/github.com/containerd/containerd/snapshots/testsuite" ] ||
  fail "containerd's sources are missing from $gopath: install golang-github-containerd-containerd-dev"

# Everything goes under one temp dir: the test binary and, through TMPDIR, the suite's case dirs.
# On exit anything still mounted there (a panic or timeout skips the suite's own unmounts) is
# lazily unmounted, deepest first, before the dir is removed without crossing into another fs.
tmp=$(mktemp -d)
cleanup() {
  awk -v p="$tmp/" 'index($5, p) == 1 { print $5 }' /proc/self/mountinfo | sort -r |
    while read -r mp; do umount -l "$mp" || true; done
  # A btrfs TMPDIR (scripts/with-btrfs-tmp.sh) holds the cases' subvolumes, which count as other
  # devices here and go with that filesystem: rm's notice for each is noise.
  rm -rf --one-file-system "$tmp" 2>&1 | grep -v "since it's on a different device" >&2 || true
}
trap cleanup EXIT

# GOPATH mode against Debian's packaged sources, no network, no module proxy, no cgo (no C compiler
# needed). GOCACHE only when go has none (no HOME), so reruns reuse the usual build cache.
export GO111MODULE=off GOPATH="$gopath" GOPROXY=off GOFLAGS='' CGO_ENABLED=0
if [ -z "$(go env GOCACHE 2>/dev/null)" ]; then
  export GOCACHE="$tmp/gocache"
fi

case "$mode" in
  baseline)
    run=TestOverlayBaseline
    ;;
  strata)
    driver=$2
    exe=$3
    shift 3
    # A path is made absolute (the binary runs from the repo root anyway); a bare name is looked up.
    if [[ "$exe" == */* ]]; then
      [[ "$exe" == /* ]] || exe="$repo/$exe"
    else
      found=$(type -P "$exe") || fail "executable not found on PATH: $exe"
      exe=$found
    fi
    if [ ! -f "$exe" ] || [ ! -x "$exe" ]; then fail "not an executable file: $exe"; fi
    for arg in "$@"; do
      [[ "$arg" != *[[:space:]]* ]] || fail "extra arguments cannot contain whitespace: '$arg'"
    done
    export STRATA_SNAPSHOTTER="$exe" STRATA_SNAPSHOTTER_DRIVER="$driver" STRATA_SNAPSHOTTER_ARGS="$*"
    run=TestStrata
    ;;
esac

echo "snapshotter-suite: building test/snapshotter-suite ($(go version))"
started=$SECONDS
if ! (cd test/snapshotter-suite && go test -c -o "$tmp/suite.test" .) >"$tmp/build.txt" 2>&1; then
  cat "$tmp/build.txt" >&2
  fail "build failed (missing Go packages? see above: each import comes from a golang-*-dev package)"
fi
echo "snapshotter-suite: built in $((SECONDS - started))s; running $run"

set +e
TMPDIR="$tmp" "$tmp/suite.test" -test.v -test.run "^$run\$" -test.timeout "${SNAPSHOTTER_SUITE_TIMEOUT:-10m}" 2>&1 | tee "$tmp/out.txt"
rc=${PIPESTATUS[0]}
set -e

# The suite's cases are the subtests: "    --- PASS: TestX/Case (0.01s)".
count() { grep -cE "^[[:space:]]+--- $1: $run/" "$tmp/out.txt" || true; }
passed=$(count PASS)
failed=$(count FAIL)
skipped=$(count SKIP)
if [ "$rc" != 0 ] && [ "$failed" = 0 ]; then
  echo "snapshotter-suite: the test binary exited $rc without a failed case (panic or timeout?)" >&2
  failed=1
fi
if [ "$((passed + failed))" = 0 ]; then
  echo "snapshotter-suite: no suite case ran (skipped: $skipped)" >&2
  failed=1
fi
echo "snapshotter-suite: $run took $((SECONDS - started))s in all"
if [ "$skipped" != 0 ]; then
  echo "$passed passed, $failed failed, $skipped skipped"
else
  echo "$passed passed, $failed failed"
fi
[ "$failed" = 0 ]
