#!/bin/sh
# Install strata, the Docker storage (graph) driver plugin, as a systemd service:
#
#   curl -fsSL BASE/install.sh | sh                      # install (as root)
#   curl -fsSL BASE/install.sh | sh -s -- --uninstall    # undo
#   sh install.sh --root DIR | --dry-run | --force | --help
#
# Downloads strata-linux-ARCH and its .sha256 from STRATA_BASE_URL, checks the checksum, installs
# /usr/local/bin/strata and strata.service (before docker.service), and merges "experimental": true and
# "storage-driver": "strata" into /etc/docker/daemon.json (backup: daemon.json.strata-backup).
set -eu

# Where releases are published. A placeholder until the project's release host exists: set
# STRATA_BASE_URL to a directory holding strata-linux-x64, strata-linux-arm64 and their .sha256 files.
STRATA_DEFAULT_BASE_URL="https://strata.invalid/releases/latest"

BIN=/usr/local/bin/strata
UNIT=/etc/systemd/system/strata.service
DAEMON_JSON=/etc/docker/daemon.json
DATA_ROOT=/var/lib/docker

usage() {
  cat <<'EOF'
Usage: install.sh [--root DIR] [--dry-run] [--force] [--uninstall]

  --root DIR    install into DIR instead of / (also: DESTDIR=DIR); systemctl is not run
  --dry-run     print what would be done and change nothing
  --force       switch the storage driver even though images exist under the old one
  --uninstall   undo an install: restore daemon.json, remove the unit and the binary

Environment: STRATA_BASE_URL (where strata-linux-ARCH{,.sha256} are downloaded from)
EOF
}

say() { printf 'strata-install: %s\n' "$*"; }
warn() { printf 'strata-install: warning: %s\n' "$*" >&2; }
die() { printf 'strata-install: error: %s\n' "$*" >&2; exit 1; }

systemd_running() { [ -z "$root" ] && [ -d /run/systemd/system ] && command -v systemctl >/dev/null 2>&1; }

# act CMD…: run it, or only print it on a dry run.
act() {
  if $dry_run; then say "would run: $*"; else "$@"; fi
}

unit_text() {
  cat <<EOF
[Unit]
Description=strata Docker storage (graph) driver plugin
# dockerd finds the plugin's socket at start: serve before it, stop after it.
Before=docker.service
After=local-fs.target

[Service]
ExecStart=$BIN serve
# SIGTERM lets calls in flight finish, then strata exits 0.
KillSignal=SIGTERM
TimeoutStopSec=120
Restart=on-failure

[Install]
WantedBy=multi-user.target docker.service
EOF
}

main() {
  root=${DESTDIR:-}
  dry_run=false
  force=false
  uninstall=false
  while [ $# -gt 0 ]; do
    case $1 in
      --root) [ $# -ge 2 ] || die "--root needs a directory"; root=$2; shift 2 ;;
      --root=*) root=${1#--root=}; shift ;;
      --dry-run) dry_run=true; shift ;;
      --force) force=true; shift ;;
      --uninstall) uninstall=true; shift ;;
      -h | --help) usage; exit 0 ;;
      *) usage >&2; die "unknown option $1" ;;
    esac
  done
  root=${root%/}
  if [ -n "$root" ]; then
    case $root in /*) ;; *) root=$(pwd)/$root ;; esac
  fi

  # The real system (root empty) needs root and gets systemctl; a directory install gets neither.
  if [ -z "$root" ] && [ "$(id -u)" != 0 ]; then
    die "installing to / must be run as root (sudo sh install.sh), or pass --root DIR to install into a directory"
  fi

  tmp=$(mktemp -d)
  trap 'rm -rf "$tmp"' EXIT
  trap 'exit 1' HUP INT TERM

  # -------------------------------------------------------------------------------------------------
  if $uninstall; then
    if systemd_running; then
      act systemctl disable --now strata.service || warn "systemctl disable strata.service failed; continuing"
    elif [ -n "$root" ]; then
      say "uninstalling from $root: skipping systemctl"
    fi
    if [ -x "$root$BIN" ]; then
      dry_flag=; $dry_run && dry_flag=--dry-run
      # shellcheck disable=SC2086 # dry_flag is one word or nothing
      "$root$BIN" install-merge-daemon-json --root "${root:-/}" --uninstall $dry_flag "$DAEMON_JSON"
    elif [ -f "$root$DAEMON_JSON.strata-backup" ]; then
      warn "$root$BIN is missing: restoring $DAEMON_JSON from its backup as it was"
      act mv -f "$root$DAEMON_JSON.strata-backup" "$root$DAEMON_JSON"
    fi
    [ ! -e "$root$UNIT" ] || act rm -f "$root$UNIT"
    if systemd_running; then act systemctl daemon-reload; fi
    [ ! -e "$root$BIN" ] || act rm -f "$root$BIN"
    if $dry_run; then say "dry run: nothing was changed"; exit 0; fi
    say "uninstalled; layers stay under $DATA_ROOT/strata and state under /var/lib/strata (remove them yourself)"
    say "restart Docker to go back to the previous storage driver: systemctl restart docker"
    exit 0
  fi

  # -------------------------------------------------------------------------------------------------
  case $(uname -m) in
    x86_64 | amd64) arch=x64 ;;
    aarch64 | arm64) arch=arm64 ;;
    *) die "no strata release for this machine ($(uname -m)); releases exist for x86_64 and aarch64" ;;
  esac
  base=${STRATA_BASE_URL:-$STRATA_DEFAULT_BASE_URL}
  base=${base%/}
  asset=strata-linux-$arch

  # download URL FILE: with curl, or wget where curl is missing (a fresh machine may have either).
  if command -v curl >/dev/null 2>&1; then
    download() { curl -fsSL --retry 2 -o "$2" "$1"; }
  elif command -v wget >/dev/null 2>&1; then
    download() { wget -nv -O "$2" "$1"; }
  else
    die "neither curl nor wget is installed: install one of them (apt-get install curl)"
  fi
  command -v sha256sum >/dev/null 2>&1 || die "sha256sum is missing (it is in coreutils)"

  say "downloading $base/$asset"
  download "$base/$asset" "$tmp/$asset" || die "cannot download $base/$asset (see the error above); nothing was installed"
  download "$base/$asset.sha256" "$tmp/$asset.sha256" || die "cannot download $base/$asset.sha256 (see the error above); nothing was installed"
  want=$(cut -d' ' -f1 <"$tmp/$asset.sha256")
  got=$(sha256sum "$tmp/$asset" | cut -d' ' -f1)
  case $want in
    *[!0-9a-f]* | "") die "$asset.sha256 holds no sha256 checksum; nothing was installed" ;;
  esac
  [ ${#want} = 64 ] || die "$asset.sha256 holds no sha256 checksum; nothing was installed"
  [ "$want" = "$got" ] || die "checksum mismatch for $asset: expected $want, got $got; nothing was installed"
  chmod 0755 "$tmp/$asset"
  version=$("$tmp/$asset" version) || die "the downloaded $asset does not run on this machine; nothing was installed"
  say "verified $version"

  force_flag=; $force && force_flag=--force
  # Before anything is written: refuse to hide existing images unless --force.
  # shellcheck disable=SC2086 # force_flag is one word or nothing
  if ! "$tmp/$asset" install-merge-daemon-json --root "${root:-/}" --check $force_flag "$DAEMON_JSON"; then
    die "nothing was installed"
  fi

  if $dry_run; then
    say "would install $asset as $root$BIN (mode 0755)"
    say "would write $root$UNIT:"
  else
    mkdir -p "$root$(dirname "$BIN")"
    cp "$tmp/$asset" "$root$BIN.strata-new"
    chmod 0755 "$root$BIN.strata-new"
    mv -f "$root$BIN.strata-new" "$root$BIN"
    say "installed $root$BIN"
  fi

  if $dry_run; then
    unit_text
  else
    mkdir -p "$root$(dirname "$UNIT")"
    unit_text >"$root$UNIT"
    chmod 0644 "$root$UNIT"
    say "wrote $root$UNIT"
  fi

  if $dry_run; then
    # shellcheck disable=SC2086
    "$tmp/$asset" install-merge-daemon-json --root "${root:-/}" --dry-run $force_flag "$DAEMON_JSON"
  else
    # shellcheck disable=SC2086
    "$root$BIN" install-merge-daemon-json --root "${root:-/}" $force_flag "$DAEMON_JSON"
  fi

  if systemd_running; then
    act systemctl daemon-reload
    act systemctl enable strata.service
    act systemctl start strata.service
  elif [ -n "$root" ]; then
    say "installing into $root: skipping systemctl (enable strata.service on the target system)"
  else
    warn "systemd is not running: strata.service is installed but not enabled; start strata before dockerd yourself, e.g.: $BIN serve &"
  fi

  if $dry_run; then say "dry run: nothing was changed"; exit 0; fi
  say "done. Restart Docker to use strata: systemctl restart docker"
  say "images under the previous storage driver stay on disk but are invisible while strata is the driver"
}

# Last line: a download cut short runs nothing (curl | sh executes what has arrived so far).
main "$@"
