#!/usr/bin/env bash
# What the end-to-end tests need from the system: docker.io (dockerd 20.10 on Debian 12) and
# busybox-static (the whole image the tests import), btrfs-progs (reflink tests on a btrfs loop image),
# e2fsprogs (mkfs.ext4: size-limited layers, the disk-full Home), shellcheck (install.sh lint),
# golang-go and golang-github-containerd-containerd-dev (containerd's own SnapshotterSuite, built offline
# in GOPATH mode from Debian's Go sources; docker.io brings containerd 1.6 and ctr), debootstrap (the
# Debian 13 chroot with dockerd 26 and containerd 1.7: scripts/trixie-chroot.sh), erofs-utils (fsck.erofs checks
# every image the EROFS writer tests produce), qemu-system-x86, cpio and kmod (the test VM of test/vm:
# its initramfs, the kernel modules' dependencies).
# Idempotent: installs only what is missing.
set -euo pipefail

packages=(docker.io busybox-static btrfs-progs e2fsprogs shellcheck golang-go golang-github-containerd-containerd-dev debootstrap erofs-utils qemu-system-x86 cpio kmod)
missing=()
for pkg in "${packages[@]}"; do
  if dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q '^install ok installed$'; then
    echo "install-test-deps: $pkg is installed"
  else
    missing+=("$pkg")
  fi
done

if [ "${#missing[@]}" -eq 0 ]; then
  echo "install-test-deps: nothing to do"
  exit 0
fi

if [ "$(id -u)" != 0 ]; then
  echo "install-test-deps: missing ${missing[*]}; run as root (or: sudo apt-get install -y ${missing[*]})" >&2
  exit 1
fi
if ! command -v apt-get >/dev/null; then
  echo "install-test-deps: missing ${missing[*]} and there is no apt-get: install them by hand" >&2
  exit 1
fi

echo "install-test-deps: apt-get update"
apt-get update -qq
echo "install-test-deps: apt-get install -y ${missing[*]}"
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}"
echo "install-test-deps: installed ${missing[*]}"
