#!/usr/bin/env bash
# Run a command with TMPDIR on a btrfs filesystem of its own: a sparse image file formatted by
# mkfs.btrfs and loop-mounted (autoclear), unmounted and deleted afterwards whatever the command
# did. The e2e suites put their daemons' data roots, and so strata's Home, under TMPDIR.
#   bash scripts/with-btrfs-tmp.sh [--quota] COMMAND...   (as root; needs btrfs-progs)
# --quota enables qgroups on it (what strata's btrfs size limits need).
# BTRFS_TMP_SIZE sets the image size (default 8G; sparse, so it takes what is written).
set -euo pipefail
quota=0
if [ "${1:-}" = --quota ]; then quota=1; shift; fi
[ "$(id -u)" = 0 ] || { echo "with-btrfs-tmp: must run as root (loop mount)" >&2; exit 1; }
command -v mkfs.btrfs >/dev/null || { echo "with-btrfs-tmp: mkfs.btrfs is missing: apt-get install -y btrfs-progs" >&2; exit 1; }
base=$(mktemp -d /tmp/strata-btrfs-tmp-XXXXXX)
# shellcheck disable=SC2317 # run by the EXIT trap
cleanup() {
  # Lazily unmount whatever the command left mounted inside, deepest first, then the filesystem.
  awk -v p="$base/mnt/" 'index($5, p) == 1 { print $5 }' /proc/self/mountinfo | sort -r |
    while read -r mp; do umount -l "$mp" || true; done
  umount -l "$base/mnt" 2>/dev/null || true
  rm -rf --one-file-system "$base"
}
trap cleanup EXIT
# dockerd --userns-remap needs every directory above its data root to let the remapped root through.
chmod 0755 "$base"
truncate -s "${BTRFS_TMP_SIZE:-8G}" "$base/fs.img"
mkfs.btrfs -q -f "$base/fs.img"
mkdir "$base/mnt"
mount -o loop "$base/fs.img" "$base/mnt"
chmod 1777 "$base/mnt"
if [ "$quota" = 1 ]; then btrfs quota enable "$base/mnt"; fi
set +e
TMPDIR="$base/mnt" "$@"
rc=$?
set -e
exit "$rc"
