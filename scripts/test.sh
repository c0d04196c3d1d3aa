#!/usr/bin/env bash
# The README's test command (npm test): installs what the tests need, builds, runs every suite.
set -uo pipefail
cd "$(dirname "$0")/.."
log=$(mktemp -d)
trap 'rm -rf "$log"' EXIT
status=0
failed_stages=()

# npm install, not npm ci: npm 11 leaves the other platforms' optional deno packages out of the
# lockfile and npm ci then refuses it; install still pins every version the lockfile records.
npm install --no-audit --no-fund >"$log/npm.txt" 2>&1 || { cat "$log/npm.txt"; exit 1; }
if [ "$(id -u)" = 0 ]; then
  bash scripts/install-test-deps.sh || exit 1
else
  echo "test: not root: the end-to-end and mount tests will be skipped (they need root and docker.io)"
fi
./compile.sh || exit 1

run() { # name, command...: run one suite, keep its output for the summary
  local name=$1; shift
  echo "=== $name: $*"
  "$@" 2>&1 | tee "$log/$name.txt"
  local rc=${PIPESTATUS[0]}
  [ "$rc" = 0 ] || { echo "=== $name FAILED (exit $rc)"; status=1; failed_stages+=("$name (exit $rc)"); }
}

run typecheck node_modules/.bin/tsc --noEmit -p .
run deno-check node_modules/.bin/deno check src/main.deno.ts
# Every test file outside test/e2e and test/vm (those run below, as stages that start their daemons
# or virtual machines).
mapfile -t unit_files < <(find test -name '*.test.ts' ! -path 'test/e2e/*' ! -path 'test/vm/*' | sort | sed 's|^|./|')
run unit node_modules/.bin/bun test --timeout 60000 "${unit_files[@]}"
for smoke in test/*-deno-smoke.ts test/*/*-deno-smoke.ts; do
  [ -f "$smoke" ] && run "deno-$(basename "$smoke" .ts)" node_modules/.bin/deno run -A "$smoke"
done
if [ "$(id -u)" = 0 ]; then
  # containerd's own snapshotter suite through the proxy API: its overlayfs as the baseline, then
  # strata's snapshotter per driver (compiled binary), and on Deno.
  run snapshotter-suite-baseline bash scripts/snapshotter-suite.sh baseline
  for driver in vfs overlay erofs; do
    run "snapshotter-suite-$driver" bash scripts/snapshotter-suite.sh strata "$driver" dist/strata
  done
  run snapshotter-suite-deno bash scripts/snapshotter-suite.sh strata overlay node_modules/.bin/deno run -A src/main.deno.ts
  # btrfs on a loop-mounted btrfs TMPDIR (the cases' roots, so strata's Home): ~40 s.
  run snapshotter-suite-btrfs bash scripts/with-btrfs-tmp.sh bash scripts/snapshotter-suite.sh strata btrfs dist/strata
  # A private containerd 1.6 driven by ctr: its own overlayfs first, then strata (every variant on
  # overlay; the binary on vfs).
  STRATA_E2E=1 STRATA_E2E_SNAPSHOTTER=overlayfs run e2e-containerd-baseline node_modules/.bin/bun test --timeout 600000 test/e2e/containerd.test.ts
  STRATA_E2E=1 STRATA_E2E_DRIVER=overlay run e2e-containerd-overlay node_modules/.bin/bun test --timeout 600000 test/e2e/containerd.test.ts
  STRATA_E2E=1 STRATA_E2E_DRIVER=vfs STRATA_E2E_VARIANTS=binary run e2e-containerd-vfs node_modules/.bin/bun test --timeout 600000 test/e2e/containerd.test.ts
  STRATA_E2E=1 STRATA_E2E_DRIVER=erofs STRATA_E2E_VARIANTS=bun run e2e-containerd-erofs node_modules/.bin/bun test --timeout 600000 test/e2e/containerd.test.ts
  # Docker's containerd image store: dockerd 26.1 and containerd 1.7 from Debian 13, in a debootstrap
  # chroot kept in /var/cache/strata/trixie (made when missing: ~35 s), on strata's snapshotter (binary;
  # overlay ~30 s, vfs ~16 s). A chroot that cannot be made fails its stage, and the tests then fail on
  # the missing tree instead of skipping.
  run trixie-chroot bash scripts/trixie-chroot.sh
  for driver in overlay vfs; do
    STRATA_E2E=1 STRATA_E2E_DRIVER=$driver run "e2e-dockerd26-$driver" node_modules/.bin/bun test --timeout 600000 test/e2e/dockerd26.test.ts
  done
  # The same dockerd 26.1 on strata as a GraphDriver plugin (--experimental), the binary and the
  # managed plugin: the scenario dockerd 20.10 runs below (~70 s a driver).
  for driver in overlay vfs; do
    STRATA_E2E=1 STRATA_E2E_DRIVER=$driver run "e2e-dockerd26-plugin-$driver" node_modules/.bin/bun test --timeout 600000 test/e2e/dockerd26-plugin.test.ts
  done
  # The drivers' tests on the kernels users run, in a VM (test/vm: Debian's stock kernels, fetched
  # once into /var/cache/strata/vm), and power cuts: strata on a virtual disk, qemu SIGKILLed
  # mid-load, every acknowledged layer checked after the reboot. Where /dev/kvm is missing or cannot
  # boot a stock kernel (kvm_pvm), qemu emulates (TCG, ~10x slower: 6.1 ~4.75 min, 6.12 ~5 min, ~90 s
  # a power-cut round). Without qemu and its tools these stages skip, and fail under CI=true.
  vm_suite=(node_modules/.bin/bun test --timeout 600000 test/vfs.test.ts test/overlay.test.ts test/overlay-quota.test.ts)
  run vm-kernel-6.1 node_modules/.bin/bun test/vm/run.ts --kernel bookworm -- "${vm_suite[@]}"
  run vm-kernel-6.12 node_modules/.bin/bun test/vm/run.ts --kernel trixie -- "${vm_suite[@]}"
  # dockerd 20.10 on strata (binary, overlay) on Debian 12's and 13's kernels: the plugin scenario in
  # the VM, 5 containers at once instead of 20 (~3-5 min each under TCG, ~1 min with KVM). 6.12 gets
  # one vCPU: under TCG with two, its kernel oopsed (int3 in __kmalloc_noprof, text patching) as
  # runc started.
  for kernel in bookworm:6.1:2 trixie:6.12:1; do
    IFS=: read -r release version cpus <<<"$kernel"
    STRATA_E2E=1 STRATA_E2E_DRIVER=overlay STRATA_E2E_VARIANTS=binary STRATA_E2E_PARALLEL=5 run "vm-dockerd-$version" \
      node_modules/.bin/bun test/vm/run.ts --kernel "$release" --cpus "$cpus" --timeout-s 1500 -- \
      bash test/vm/with-docker.sh node_modules/.bin/bun test --timeout 600000 test/e2e/plugin.test.ts
  done
  STRATA_VM=1 STRATA_POWER_CUT_ROUNDS=${STRATA_POWER_CUT_ROUNDS:-3} run vm-power-cut node_modules/.bin/bun test --timeout 600000 test/vm/power-cut.test.ts
fi
if [ "$(id -u)" = 0 ] && [ -x /usr/sbin/dockerd ]; then
  for driver in vfs overlay erofs; do
    STRATA_E2E=1 STRATA_E2E_DRIVER=$driver run "e2e-$driver" node_modules/.bin/bun test --timeout 600000 test/e2e/plugin.test.ts test/e2e/managed-plugin.test.ts test/e2e/userns.test.ts test/e2e/load.test.ts
  done
  # btrfs: dockerd's data root (and so strata's Home) on a loop-mounted btrfs with quotas on, so
  # --storage-opt size is a qgroup limit; also under --userns-remap; the compiled binary only (~30-60 s).
  STRATA_E2E=1 STRATA_E2E_DRIVER=btrfs STRATA_E2E_VARIANTS=binary run e2e-btrfs \
    bash scripts/with-btrfs-tmp.sh --quota node_modules/.bin/bun test --timeout 600000 test/e2e/plugin.test.ts test/e2e/userns.test.ts
  # The same scenario on dockerd's own overlay2 and vfs: proves the scenario's expectations.
  STRATA_E2E=1 run e2e-builtin node_modules/.bin/bun test --timeout 600000 test/e2e/builtin.test.ts
fi

# One closing line over all suites (bun prints "N pass"/"N fail" per run; deno smokes "N passed, N failed").
passed=$(cat "$log"/*.txt | sed -nE 's/^ *([0-9]+) pass$/\1/p; s/^([0-9]+) passed, [0-9]+ failed.*/\1/p' | awk '{s+=$1} END {print s+0}')
failed=$(cat "$log"/*.txt | sed -nE 's/^ *([0-9]+) fail$/\1/p; s/^[0-9]+ passed, ([0-9]+) failed.*/\1/p' | awk '{s+=$1} END {print s+0}')
skipped=$(cat "$log"/*.txt | sed -nE 's/^ *([0-9]+) skip$/\1/p; s/^[0-9]+ passed, [0-9]+ failed, ([0-9]+) skipped$/\1/p' | awk '{s+=$1} END {print s+0}')
# Under CI every skip must be one scripts/allowed-skips.txt lists with its reason: a stage that
# must run here and silently did not is a failure, not a green run.
if [ "${CI:-}" = true ]; then
  unlisted=$(cat "$log"/*.txt | sed -nE 's/^\(skip\) (.*)$/\1/p; s/^ *--- SKIP: ([^ ]+).*/\1/p' | sort -u |
    grep -v -f <(grep -v '^#' scripts/allowed-skips.txt | sed '/^$/d') || true)
  if [ -n "$unlisted" ]; then
    echo "=== skips not in scripts/allowed-skips.txt (CI=true fails on them):"
    echo "$unlisted"
    status=1
  fi
fi
[ "$status" = 0 ] || [ "$failed" != 0 ] || failed=1
# The tail of a run is what a CI report shows: name the failed stages and tests there, each with its log.
if [ "${#failed_stages[@]}" != 0 ]; then
  echo "=== failed stages: ${failed_stages[*]}"
  for f in "$log"/*.txt; do
    grep -E '^\(fail\) |^ *--- FAIL: |^error: |^FAILED ' "$f" | sed "s|^|  [$(basename "$f" .txt)] |" | head -20
  done
fi
echo "strata: $passed passed, $failed failed, $skipped skipped"
exit "$status"
