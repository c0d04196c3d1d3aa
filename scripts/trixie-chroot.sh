#!/usr/bin/env bash
# A Debian 13 ("trixie") chroot with dockerd 26.1 (docker.io), containerd 1.7 and runc, for
# test/e2e/dockerd26.test.ts: trixie's runc needs glibc 2.38 (Debian 12 has 2.36), so those daemons
# run inside this tree instead of on the host.
#
#   bash scripts/trixie-chroot.sh [DIR]     DIR default: $STRATA_TRIXIE_ROOT or /var/cache/strata/trixie
#
# Idempotent: a complete tree carries a marker naming the package list; a tree without it (an
# interrupted run) or with another list is removed and made again; concurrent runs are serialised
# with flock on DIR.lock. Needs root, debootstrap (installed
# with apt-get when missing) and deb.debian.org.
set -euo pipefail

root=${1:-${STRATA_TRIXIE_ROOT:-/var/cache/strata/trixie}}
mirror=http://deb.debian.org/debian
keyring=/usr/share/keyrings/debian-archive-keyring.gpg
# trixie splits the client out of docker.io (docker-cli, only recommended); iptables: dockerd looks for
# it at start even with --iptables=false; ca-certificates: a sane client; docker-buildx: `docker build`
# through BuildKit, which trixie packages apart from docker.io.
packages=(docker.io docker-cli containerd runc iptables ca-certificates docker-buildx)
marker_name=.strata-trixie-complete
marker=$root/$marker_name
want="packages: ${packages[*]}"

log() { echo "trixie-chroot: $*"; }
die() { echo "trixie-chroot: $*" >&2; exit 1; }

[ "$(id -u)" = 0 ] || die "needs root (debootstrap, chroot)"
case $root in
  /*) ;;
  *) die "DIR must be an absolute path, not $root" ;;
esac
[ "$root" != / ] || die "refusing to use / as the chroot"

mkdir -p "$(dirname "$root")"
# One build at a time per DIR: a second run waits here, then finds the marker the first one wrote
# (two unserialised runs delete each other's half-made tree).
exec 9>"$root.lock"
flock 9

# versions: what the chroot's daemons say they are (also the check that they start on this kernel).
versions() {
  unshare --mount --fork chroot "$root" sh -c 'dockerd --version; containerd --version; runc --version | head -1; docker buildx version 2>/dev/null || echo "buildx: none"'
}

# One build at a time (two test runs, or CI and a developer): the second waits, then finds it complete.
exec 9>"$root.lock"
flock 9

if [ -f "$marker" ] && grep -qxF "$want" "$marker"; then
  log "$root is complete ($(sed -n 's/^built: //p' "$marker"))"
  versions
  exit 0
fi

if grep -qF " $root/" /proc/self/mountinfo || grep -qF " $root " /proc/self/mountinfo; then
  die "something is mounted under $root: unmount it first (a test still running?)"
fi

if ! command -v debootstrap >/dev/null; then
  log "apt-get install debootstrap"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq debootstrap
fi

started=$(date +%s)
# Only a tree this script made (it leaves policy-rc.d in every one) or an empty directory is replaced.
if [ -e "$root" ] && ! [ -f "$root/usr/sbin/policy-rc.d" ] && [ -n "$(ls -A "$root")" ]; then
  die "$root exists and is not a chroot this script made: remove it or pick another DIR"
fi
# Build beside the target and rename, so a half-made tree never carries the final name.
work=$root.new
rm -rf --one-file-system "$work"
log "debootstrap --variant=minbase trixie $work $mirror"
# Once seen here: "Couldn't find these debs: apt base-files …" from one run and not the next (the
# mirror answering mid-sync), so a failed debootstrap is tried once more from scratch.
for attempt in 1 2; do
  if debootstrap --variant=minbase --keyring="$keyring" trixie "$work" "$mirror" >"$work.debootstrap.log" 2>&1; then
    break
  fi
  tail -5 "$work.debootstrap.log" | tr '\r' '\n' | grep -v '^ *$' >&2 || true
  [ "$attempt" = 1 ] || die "debootstrap failed twice (log: $work.debootstrap.log)"
  log "debootstrap failed; trying again"
  rm -rf --one-file-system "$work"
done
rm -f "$work.debootstrap.log"
bootstrapped=$(date +%s)

# No service may start inside the chroot while packages install (there is no init; dockerd's postinst
# would try).
printf '#!/bin/sh\nexit 101\n' >"$work/usr/sbin/policy-rc.d"
chmod 755 "$work/usr/sbin/policy-rc.d"
cp /etc/resolv.conf "$work/etc/resolv.conf"

log "apt-get install ${packages[*]}"
# A private mount namespace: the /proc apt's maintainer scripts want goes away with it, even on failure.
# shellcheck disable=SC2016 # $1.. are expanded by the inner sh
unshare --mount --fork sh -c '
  set -e
  root=$1; shift
  mount -t proc proc "$root/proc"
  chroot "$root" env DEBIAN_FRONTEND=noninteractive apt-get update -qq
  chroot "$root" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@"
  chroot "$root" apt-get clean
' sh "$work" "${packages[@]}" >"$work.apt.log" 2>&1 \
  || { tail -30 "$work.apt.log" >&2; die "apt-get install in the chroot failed (log: $work.apt.log)"; }
rm -f "$work.apt.log"
installed=$(date +%s)

if [ -e "$root" ]; then
  log "replacing the incomplete or outdated tree at $root"
  rm -rf --one-file-system "$root"
fi
mv "$work" "$root"
root_versions=$(versions)
{
  echo "$want"
  echo "built: $(date -u +%FT%TZ), debootstrap $((bootstrapped - started)) s, apt-get $((installed - bootstrapped)) s"
  echo "$root_versions"
} >"$marker.tmp"
mv "$marker.tmp" "$marker"
log "made $root in $((installed - started)) s (debootstrap $((bootstrapped - started)) s, apt-get install $((installed - bootstrapped)) s)"
echo "$root_versions"
