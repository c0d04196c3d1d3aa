#!/usr/bin/env bash
# Build dist/:
#   strata                         the executable for this machine (Bun runtime + the bundled source)
#   strata-linux-ARCH{,.sha256}    release artifacts for install.sh (x64; arm64 when its Bun runtime can be had)
#   plugin/{config.json,rootfs/}   the managed plugin: docker plugin create strata:VERSION dist/plugin
set -euo pipefail
cd "$(dirname "$0")"
[ -x node_modules/.bin/bun ] || npm install --no-audit --no-fund
bun=node_modules/.bin/bun
commit=$(git rev-parse --short HEAD 2>/dev/null || echo unknown)
version=$(sed -nE 's/^  "version": "([^"]+)",?$/\1/p' package.json)
bun_version=$("$bun" --version)
mkdir -p dist

case "$(uname -m)" in
  x86_64) native=x64 other=arm64 ;;
  aarch64 | arm64) native=arm64 other=x64 ;;
  *) echo "compile: unsupported machine $(uname -m)" >&2; exit 1 ;;
esac

# compile OUT [bun build flags…]: build into a temp file and rename, so a running dist/strata (a test,
# a plugin) never sees a half-written file and never makes the build fail with ETXTBSY.
# The sync worker (src/sys/_sync-worker.bun.ts) is a second entry point: a compiled binary finds a
# Worker only among the files built into it.
compile() {
  local out=$1; shift
  "$bun" build --compile --minify --sourcemap --define "STRATA_COMMIT=\"$commit\"" \
    --outfile "$out.tmp" "$@" src/main.bun.ts src/sys/_sync-worker.bun.ts >/dev/null
  mv -f "$out.tmp" "$out"
  [ ! -f "$out.tmp.map" ] || mv -f "$out.tmp.map" "$out.map"
}

# checksum FILE: FILE.sha256 in sha256sum's format, naming the file without its directory.
checksum() {
  (cd "$(dirname "$1")" && sha256sum "$(basename "$1")" >"$(basename "$1").sha256")
}

compile dist/strata
echo "built dist/strata ($(du -h dist/strata | cut -f1), version $version, commit $commit)"

ln -f dist/strata "dist/strata-linux-$native"
checksum "dist/strata-linux-$native"
echo "built dist/strata-linux-$native{,.sha256}"

# The other architecture needs Bun's runtime for it: the npm package of the same Bun version, fetched
# once with npm (the registry the build already uses) and kept in node_modules/.cache.
other_pkg=@oven/bun-linux-$([ "$other" = arm64 ] && echo aarch64 || echo x64)
runtime_dir=node_modules/.cache/strata-bun-runtimes/$other-$bun_version
if [ ! -x "$runtime_dir/package/bin/bun" ]; then
  rm -rf "$runtime_dir" && mkdir -p "$runtime_dir"
  if tgz=$(cd "$runtime_dir" && npm pack --silent "$other_pkg@$bun_version" 2>npm.log); then
    tar -xzf "$runtime_dir/$tgz" -C "$runtime_dir" package/bin/bun && rm -f "$runtime_dir/$tgz"
  fi
fi
if [ -x "$runtime_dir/package/bin/bun" ]; then
  compile "dist/strata-linux-$other" --target="bun-linux-$other" --compile-executable-path="$runtime_dir/package/bin/bun"
  checksum "dist/strata-linux-$other"
  echo "built dist/strata-linux-$other{,.sha256}"
else
  rm -f "dist/strata-linux-$other" "dist/strata-linux-$other.sha256"
  echo "compile: skipped dist/strata-linux-$other: cannot get $other_pkg@$bun_version from npm ($(tail -1 "$runtime_dir/npm.log" 2>/dev/null))"
fi

# The managed plugin's rootfs: the binary, and the loader and libraries it links (copied from this
# host; libc.so.6 is also what src/sys dlopens). The daemon adds /dev, /proc, /etc/hosts… itself.
rm -rf dist/plugin.tmp
mkdir -p dist/plugin.tmp/rootfs
cp plugin/config.json dist/plugin.tmp/config.json
ln -f dist/strata dist/plugin.tmp/rootfs/strata
libs="dist/strata"
# mkfs.ext4 formats the images of size-limited layers (--storage-opt size); without it the plugin
# answers that option with a clear error.
mkfs=$(command -v mkfs.ext4 || true)
if [ -n "$mkfs" ]; then
  mkdir -p dist/plugin.tmp/rootfs/usr/sbin
  cp --dereference "$mkfs" dist/plugin.tmp/rootfs/usr/sbin/mkfs.ext4
  libs="$libs $mkfs"
else
  echo "compile: no mkfs.ext4 on this host: the managed plugin will refuse --storage-opt size"
fi
# shellcheck disable=SC2086 # a list of paths without spaces
ldd $libs | awk '{ for (i = 1; i <= NF; i++) if ($i ~ /^\// && $i !~ /:$/) print $i }' | sort -u | while read -r lib; do
  cp --dereference --parents "$lib" dist/plugin.tmp/rootfs/
done
rm -rf dist/plugin && mv dist/plugin.tmp dist/plugin
if [ "$(id -u)" = 0 ] && command -v unshare >/dev/null; then
  # Proves the rootfs is complete: the binary starts with nothing but what is in it (and the /proc the
  # daemon gives every plugin: Bun reads its bundled code through /proc/self/exe). A private mount
  # namespace drops the /proc mount even if this is interrupted.
  check=dist/.plugin-rootfs-check
  rm -rf "$check" && cp -al dist/plugin/rootfs "$check" && mkdir "$check/proc"
  # shellcheck disable=SC2016 # $1 is expanded by the inner sh
  if ! unshare --mount --fork sh -c 'mount -t proc proc "$1/proc" && chroot "$1" /strata version' sh "$check" >/dev/null; then
    rm -rf "$check"
    echo "compile: dist/plugin/rootfs/strata does not start in its rootfs" >&2
    exit 1
  fi
  rm -rf "$check"
fi
echo "built dist/plugin ($(du -sh --count-links dist/plugin | cut -f1)): docker plugin create strata:$version dist/plugin"
