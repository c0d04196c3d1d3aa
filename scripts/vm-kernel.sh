#!/usr/bin/env bash
# A Debian kernel for the KVM test machine (test/vm/): the stock linux-image-amd64 of one release,
# extracted from its .deb (nothing is installed on the host), with the modules the tests need and
# their dependencies decompressed in load order.
#
#   bash scripts/vm-kernel.sh bookworm|trixie     prints the kernel's directory on its last line
#
# The directory ($STRATA_VM_CACHE or /var/cache/strata/vm, then kernel-<release>/) holds vmlinuz,
# modules/*.ko and modules/order (one file name a line, dependencies first). Idempotent: a complete
# directory carries a marker naming the package and module list; concurrent runs are serialised with
# flock on DIR.lock. Both releases come through a private apt configuration (its own sources, lists
# and cache under the directory), so the host's apt sources and the trixie chroot stay untouched.
# Needs root (apt-get download as root), apt-get, dpkg-deb, depmod and modprobe (kmod), xz, zstd.
set -euo pipefail

release=${1:-}
case $release in
  bookworm | trixie) ;;
  *) echo "usage: vm-kernel.sh bookworm|trixie" >&2; exit 2 ;;
esac
cache=${STRATA_VM_CACHE:-/var/cache/strata/vm}
dir=$cache/kernel-$release
mirror=http://deb.debian.org/debian
# virtio for the disk and the 9p share; ext4 for the disk; what the drivers under test mount; the
# crc32c ext4 and btrfs ask the crypto layer for (it would otherwise call a modprobe the guest lacks).
modules=(virtio_pci virtio_blk 9pnet_virtio 9p ext4 crc32c_generic overlay loop btrfs erofs)
marker=$dir/.strata-kernel-complete

log() { echo "vm-kernel: $*" >&2; }
die() { echo "vm-kernel: $*" >&2; exit 1; }

[ "$(id -u)" = 0 ] || die "needs root (apt-get download)"
for tool in apt-get dpkg-deb depmod modprobe xz zstd; do
  command -v "$tool" >/dev/null || die "missing $tool (apt-get install kmod xz-utils zstd)"
done

mkdir -p "$cache"
exec 9>"$dir.lock"
flock 9

# The private apt: this release's main with its updates and security suites (where Debian ships its
# newest stable kernel), lists and archives kept beside the kernel.
apt_dir=$cache/apt-$release
mkdir -p "$apt_dir/lists/partial" "$apt_dir/archives/partial"
printf 'deb %s %s main\n' "$mirror" "$release" "$mirror" "$release-updates" \
  http://deb.debian.org/debian-security "$release-security" >"$apt_dir/sources.list"
apt_opts=(-o "Dir::Etc::SourceList=$apt_dir/sources.list" -o "Dir::Etc::SourceParts=/dev/null"
  -o "Dir::State::Lists=$apt_dir/lists" -o "Dir::Cache=$apt_dir" -o "Dir::Cache::Archives=$apt_dir/archives"
  -o "APT::Architecture=amd64" -o "Debug::NoLocking=1" -o "APT::Sandbox::User=root" -qq)

if [ -f "$marker" ] && [ "$(sed -n 's/^modules: //p' "$marker")" = "${modules[*]}" ]; then
  log "$dir is complete ($(sed -n 's/^package: //p' "$marker"))"
  echo "$dir"
  exit 0
fi

started=$(date +%s)
apt-get "${apt_opts[@]}" update || die "apt-get update for $release failed"
# linux-image-amd64 is a metapackage: the kernel is the package it depends on.
image=$(apt-cache "${apt_opts[@]}" depends linux-image-amd64 | sed -n 's/^ *Depends: \(linux-image-[0-9].*\)$/\1/p' | head -1)
[ -n "$image" ] || die "cannot tell which kernel linux-image-amd64 of $release depends on"
version=$(apt-cache "${apt_opts[@]}" show "$image" | sed -n 's/^Version: //p' | head -1)
log "$release: $image $version"

work=$dir.new
rm -rf "$work"
mkdir -p "$work/deb" "$work/modules"
(cd "$work/deb" && apt-get "${apt_opts[@]}" download "$image") || die "apt-get download $image failed"
dpkg-deb -x "$work"/deb/*.deb "$work/root"
# trixie's packages ship /usr/lib/modules (merged /usr), bookworm's /lib/modules.
[ -d "$work/root/lib/modules" ] || { mkdir -p "$work/root/lib" && ln -s ../usr/lib/modules "$work/root/lib/modules"; }
kver=$(ls "$work/root/lib/modules/")
[ "$(echo "$kver" | wc -l)" = 1 ] || die "expected one kernel in $image, found: $kver"
cp "$work/root/boot/vmlinuz-$kver" "$work/vmlinuz"
depmod -b "$work/root" "$kver"

# Each module and its dependencies, dependencies first, once each; built-in ones need nothing.
: >"$work/modules/order"
for m in "${modules[@]}"; do
  modprobe -d "$work/root" -S "$kver" --show-depends "$m" | while read -r kind ko _; do
    [ "$kind" = insmod ] || continue
    name=$(basename "$ko"); name=${name%.xz}; name=${name%.zst}
    grep -qxF "$name" "$work/modules/order" && continue
    case $ko in
      *.xz) xz -dc "$ko" >"$work/modules/$name" ;;
      *.zst) zstd -qdc "$ko" >"$work/modules/$name" ;;
      *) cp "$ko" "$work/modules/$name" ;;
    esac
    echo "$name" >>"$work/modules/order"
  done
done
rm -rf "$work/deb" "$work/root"

rm -rf "$dir"
mv "$work" "$dir"
{
  echo "package: $image $version"
  echo "kernel: $kver"
  echo "modules: ${modules[*]}"
  echo "built: $(date -u +%FT%TZ) in $(($(date +%s) - started)) s"
} >"$marker.tmp"
mv "$marker.tmp" "$marker"
log "made $dir in $(($(date +%s) - started)) s ($(wc -l <"$dir/modules/order") modules)"
echo "$dir"
