/**
 * The private mount namespace dockerd 26.1 and containerd 1.7 from Debian 13 run in: the chroot of
 * `scripts/trixie-chroot.sh` as its root (trixie's runc needs glibc 2.38, the host has 2.36), the
 * instance dir at the same path as on the host. Used by the snapshotter's dockerd 26 (dockerd26.ts)
 * and by the GraphDriver plugin's (harness.ts).
 */
import * as fs from "node:fs";
import * as path from "node:path";
import { check, describeResult, run } from "./command.ts";
import { listProcesses } from "./host.ts";

/** The chroot `scripts/trixie-chroot.sh` makes (same default, same override). */
export const TRIXIE_ROOT = process.env.STRATA_TRIXIE_ROOT || "/var/cache/strata/trixie";

// Under the instance dir: a private mount holding the bind-mounted namespace file (a namespace file
// under a shared mount would propagate into the namespace itself, which the kernel refuses).
const NS_DIR = "ns";
const NS_FILE = "mnt";
// Where the host's root goes during pivot_root, under the chroot's /run tmpfs, unmounted right after.
const OLD_ROOT = "old-root";

// Run on the host with $1 = chroot, $2 = instance dir, $3 = a directory of the instance dir to bind on
// the namespace's /run/docker/plugins (managed plugins' sockets, then reachable from the host), or "".
// The instance dir becomes a shared mount of itself first: the host's mounts are private here, and
// without a peer group the overlay stacks
// strata mounts under it later would not reach the namespace. Inside, tmpfs over the chroot's /tmp and
// /run keeps runc state, shim sockets and the instance dir's mount point off the cached tree, and the
// chroot becomes the namespace's root by pivot_root, not chroot(2): setns(2) (nsenter, and runc for
// `docker exec`) puts a process at the namespace's root mount, which under a mere chroot is the host's
// "/" (an exec'd process then ran on the host's filesystem). pivot_root needs the new root to be a
// mount point, hence the bind of the chroot onto itself.
const NAMESPACE_SCRIPT = `
set -e
chroot=$1 inst=$2 plugins=$3
mount --bind "$inst" "$inst"
mount --make-shared "$inst"
mkdir "$inst/${NS_DIR}"
mount --bind "$inst/${NS_DIR}" "$inst/${NS_DIR}"
mount --make-private "$inst/${NS_DIR}"
touch "$inst/${NS_DIR}/${NS_FILE}"
exec unshare --mount="$inst/${NS_DIR}/${NS_FILE}" --propagation slave sh -c '
  set -e
  chroot=$1 inst=$2 plugins=$3
  mount --bind "$chroot" "$chroot"
  mount -t tmpfs -o mode=1777 tmpfs "$chroot/tmp"
  mount -t tmpfs -o mode=755 tmpfs "$chroot/run"
  mount -t proc proc "$chroot/proc"
  mount --rbind /sys "$chroot/sys"
  mount --rbind /dev "$chroot/dev"
  mkdir -p "$chroot$inst" "$chroot/run/${OLD_ROOT}"
  mount --rbind "$inst" "$chroot$inst"
  cd "$chroot"
  pivot_root . "run/${OLD_ROOT}"
  cd /
  umount --lazy "/run/${OLD_ROOT}"
  rmdir "/run/${OLD_ROOT}"
  if [ -n "$plugins" ]; then mkdir -p /run/docker/plugins; mount --bind "$plugins" /run/docker/plugins; fi
' sh "$chroot" "$inst" "$plugins"
`;

/**
 * Make the private mount namespace for instance dir `root` whose root is `chroot` (NAMESPACE_SCRIPT);
 * returns its inode, for {@link killNamespace}. `pluginExecRoot` (under `root`): what the namespace's
 * /run/docker/plugins is, so the host reaches a managed plugin's socket there.
 */
export async function makeTrixieNamespace(root: string, chroot = TRIXIE_ROOT, pluginExecRoot = ""): Promise<number> {
  if (pluginExecRoot !== "") fs.mkdirSync(pluginExecRoot, { recursive: true, mode: 0o700 });
  const res = await run(["sh", "-c", NAMESPACE_SCRIPT, "sh", chroot, root, pluginExecRoot], { timeoutMs: 30_000 });
  check(res.code === 0, `Cannot make the mount namespace for the chroot ${chroot}`, describeResult(res));
  return fs.statSync(path.join(root, NS_DIR, NS_FILE)).ino;
}

/** The mounts {@link makeTrixieNamespace} makes on the host under `root` (not the daemons' own). */
export function namespaceMounts(root: string): string[] {
  return [root, path.join(root, NS_DIR), path.join(root, NS_DIR, NS_FILE)];
}

/** SIGKILL whatever still runs in the namespace of inode `inode`; returns what it found ("pid cmdline (cgroup)"). */
export function killNamespace(inode: number): string[] {
  const found: string[] = [];
  for (const p of processesInNamespace(inode)) {
    found.push(`${p.pid} ${p.cmdline} (${_pidsCgroup(p.pid)})`);
    try {
      process.kill(p.pid, "SIGKILL");
    } catch {
      // Already gone.
    }
  }
  return found;
}

/** `argv` (paths inside the chroot) run in the mount namespace kept under the instance dir `root`, whose root is the chroot. */
export function inTrixie(root: string, argv: string[]): string[] {
  return ["nsenter", `--mount=${path.join(root, NS_DIR, NS_FILE)}`, ...argv];
}

/** The processes whose mount namespace is the one with inode `inode`. */
export function processesInNamespace(inode: number): { pid: number; cmdline: string }[] {
  const want = `mnt:[${inode}]`;
  return listProcesses().filter((p) => {
    try {
      return fs.readlinkSync(`/proc/${p.pid}/ns/mnt`) === want;
    } catch {
      return false;
    }
  });
}

// The process's cgroup (the pids controller's line on v1, the only line on v2): names the container
// a leftover belonged to.
function _pidsCgroup(pid: number): string {
  try {
    const lines = fs.readFileSync(`/proc/${pid}/cgroup`, "utf8").trim().split("\n");
    return lines.find((l) => /:pids:/.test(l)) ?? lines.find((l) => l.startsWith("0::")) ?? lines[0] ?? "";
  } catch {
    return "gone";
  }
}
