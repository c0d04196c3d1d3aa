/**
 * The host checks of `strata doctor`, each a function giving one line: what the kernel and the
 * store's filesystem offer each driver. They reuse the drivers' own probes (overlay's `detectHost`,
 * the fs magic table, the size-limit images) and work in a temp dir beside the store, never in it.
 */
import { execFile } from "node:child_process";
import { accessSync, constants } from "node:fs";
import * as fs from "node:fs/promises";
import * as os from "node:os";
import * as path from "node:path";
import { gunzipSync } from "node:zlib";
import { detectHost, inUserNamespace, nativeDiffProblem, overlayListed } from "../../drivers/overlay/host.ts";
import { QuotaImages, findMkfs } from "../../drivers/overlay/quota.ts";
import { initDriver, registeredDrivers } from "../core/driver.ts";
import { MIN_SIZE } from "../core/size-units.ts";
import { silentLogger } from "../core/log.ts";
import { unmount } from "../mount/mounter.ts";
import { fsName } from "../sys/fs-magic.ts";
import { DT, MOUNT_ATTR, type Sys } from "../sys/types.ts";

/** How one check came out: `fail` makes doctor exit 1; `info` is a fact, neither good nor bad. */
export type CheckStatus = "ok" | "warn" | "fail" | "info";

/** One line of doctor's output. */
export interface DoctorCheck {
  name: string;
  status: CheckStatus;
  detail: string;
}

/** What every check gets: libc and an empty temp dir on the store's filesystem, removed afterwards. */
export interface ProbeContext {
  sys: Sys;
  /** The temp dir (its own; checks make subdirectories). */
  dir: string;
  /** The store directory the operator named. */
  root: string;
}

const _check = (name: string, status: CheckStatus, detail: string): DoctorCheck => ({ name, status, detail });

/** `[major, minor]` of a kernel release ("6.1.0-18-amd64" → [6, 1]). */
export function kernelVersion(release: string): [number, number] {
  const m = /^(\d+)\.(\d+)/.exec(release);
  return m ? [Number(m[1]), Number(m[2])] : [0, 0];
}

const _atLeast = (v: [number, number], major: number, minor: number) => v[0] > major || (v[0] === major && v[1] >= minor);

/** The kernel's build options (/proc/config.gz or /boot/config-<release>), or null when neither is there. */
async function _kernelConfig(): Promise<Map<string, string> | null> {
  const text = await fs.readFile("/proc/config.gz").then((b) => gunzipSync(b).toString("utf8"))
    .catch(() => fs.readFile(`/boot/config-${os.release()}`, "utf8")).catch(() => null);
  if (text === null) return null;
  return new Map(text.split("\n").filter((l) => l.startsWith("CONFIG_")).map((l) => l.split("=", 2) as [string, string]));
}

async function _filesystems(): Promise<Set<string>> {
  const text = await fs.readFile("/proc/filesystems", "utf8").catch(() => "");
  return new Set(text.split("\n").map((l) => l.split("\t").at(-1)!).filter(Boolean));
}

function _which(candidates: readonly string[]): string | null {
  for (const c of candidates) {
    try {
      accessSync(c, constants.X_OK);
      return c;
    } catch {
      // next
    }
  }
  return null;
}

const _sbin = (tool: string) => ["/usr/sbin", "/sbin", "/usr/bin", "/bin"].map((d) => path.join(d, tool));

/** The kernel release: 5.8 brings loop autoclear (size limits), 6.8 overlay's `lowerdir+` (500-layer chains). */
export async function checkKernel(): Promise<DoctorCheck> {
  const release = os.release();
  const v = kernelVersion(release);
  if (!_atLeast(v, 5, 8)) return _check("kernel", "warn", `${release}: older than 5.8 (size limits need LOOP_CONFIGURE; the new mount API needs 5.2)`);
  return _check("kernel", "ok", `${release}${_atLeast(v, 6, 8) ? "" : " (overlay's lowerdir+ needs 6.8: chains stop at 128 layers)"}`);
}

/** The store's filesystem, and whether overlay can keep its upper dirs there. */
export async function checkBackingFs(ctx: ProbeContext): Promise<DoctorCheck> {
  const name = fsName(ctx.sys.statfs(ctx.dir).type);
  const where = `"${ctx.root}" is on ${name}`;
  if (["aufs", "ecryptfs", "nfs", "overlayfs", "zfs"].includes(name)) return _check("backing-fs", "warn", `${where}: overlay refuses it as an upper layer (vfs works)`);
  return _check("backing-fs", "ok", where);
}

/** Whether readdir reports entry types there (overlay refuses a filesystem without d_type). */
export async function checkDType(ctx: ProbeContext): Promise<DoctorCheck> {
  const dir = path.join(ctx.dir, "dtype");
  await fs.mkdir(dir);
  await fs.writeFile(path.join(dir, "f"), "");
  const ok = ctx.sys.readdirTypes(dir).every((e) => e.type !== DT.UNKNOWN);
  return ok ? _check("d_type", "ok", "readdir reports entry types") : _check("d_type", "warn", "the filesystem does not fill in d_type: overlay cannot run on it");
}

/** overlay through the driver's own probe: does it mount, with `lowerdir+` or mount(2), and may it read diffs natively. */
export async function checkOverlay(ctx: ProbeContext): Promise<DoctorCheck[]> {
  const dir = path.join(ctx.dir, "overlay");
  await fs.mkdir(dir);
  let method: string;
  try {
    const f = await detectHost(ctx.sys, dir, { method: "auto", nativeDiff: true });
    method = f.method === "fsconfig"
      ? "mounts; lowerdir+ through fsconfig: chains up to 500 layers"
      : "mounts with mount(2) only (no lowerdir+): chains up to 128 layers";
    method += f.userxattr ? "; in a user namespace (userxattr)" : "";
  } catch (err) {
    const listed = await overlayListed();
    return [_check("overlay", "warn", `${(err as Error).message}${listed ? "" : " (not in /proc/filesystems)"}: vfs only`)];
  }
  const problem = await nativeDiffProblem();
  return [
    _check("overlay", "ok", method),
    problem === null
      ? _check("overlay-diff", "ok", "redirect_dir and metacopy off: diffs read the upper dir (native)")
      : _check("overlay-diff", "warn", `${problem}: diffs compare whole trees (naive, slower)`),
  ];
}

/** Size limits: loop devices and mkfs.ext4, tried by making, mounting and dropping one 16M image. */
export async function checkSizeLimits(ctx: ProbeContext): Promise<DoctorCheck> {
  const mkfs = findMkfs();
  if (mkfs === null) return _check("size-limits", "warn", "mkfs.ext4 (e2fsprogs) is not installed: --storage-opt size is refused");
  const image = path.join(ctx.dir, "size.img");
  const mnt = path.join(ctx.dir, "size");
  await fs.mkdir(mnt);
  const images = new QuotaImages(ctx.sys, silentLogger, mkfs);
  try {
    await images.format(image, MIN_SIZE);
    images.mount(image, mnt);
    images.unmount(mnt);
  } catch (err) {
    return _check("size-limits", "warn", `an ext4 image on a loop device does not mount (${(err as Error).message}): --storage-opt size fails`);
  }
  return _check("size-limits", "ok", `ext4 images on loop devices (${mkfs}, autoclear loop devices)`);
}

/** erofs in the kernel, and mounting an image file directly (file-backed, Linux 6.12), tried with mkfs.erofs when it is installed. */
export async function checkErofs(ctx: ProbeContext): Promise<DoctorCheck[]> {
  const listed = (await _filesystems()).has("erofs");
  const config = await _kernelConfig();
  const built = config?.get("CONFIG_EROFS_FS");
  if (!listed && built !== "y" && built !== "m") return [_check("erofs", "info", "not in this kernel (CONFIG_EROFS_FS)")];
  const out = [_check("erofs", "ok", listed ? "in the kernel" : "a module (loaded at the first mount)")];
  const mkfs = _which(_sbin("mkfs.erofs"));
  if (mkfs === null) {
    const backed = config?.get("CONFIG_EROFS_FS_BACKED_BY_FILE");
    out.push(backed === "y"
      ? _check("erofs-file", "ok", "file-backed mounts built in (CONFIG_EROFS_FS_BACKED_BY_FILE=y; mkfs.erofs not installed to try one)")
      : _check("erofs-file", "info", `file-backed mounts ${backed === undefined ? "unknown (no kernel config, mkfs.erofs not installed)" : "not built in: images need a loop device"}`));
    return out;
  }
  const src = path.join(ctx.dir, "erofs-src");
  const image = path.join(ctx.dir, "probe.erofs");
  const mnt = path.join(ctx.dir, "erofs");
  await fs.mkdir(src);
  await fs.mkdir(mnt);
  await fs.writeFile(path.join(src, "hello"), "strata\n");
  try {
    await new Promise<void>((resolve, reject) => execFile(mkfs, ["--quiet", image, src], { timeout: 30_000 }, (e) => (e ? reject(e) : resolve())));
  } catch (err) {
    out.push(_check("erofs-file", "warn", `mkfs.erofs failed: ${(err as Error).message.split("\n")[0]}`));
    return out;
  }
  try {
    const fd = ctx.sys.fsopen("erofs");
    try {
      ctx.sys.fsconfig(fd, "source", image);
      ctx.sys.fsconfigCreate(fd);
      const m = ctx.sys.fsmount(fd, MOUNT_ATTR.RDONLY);
      try {
        ctx.sys.moveMount(m, mnt);
      } finally {
        ctx.sys.close(m);
      }
    } finally {
      ctx.sys.close(fd);
    }
    const read = await fs.readFile(path.join(mnt, "hello"), "utf8");
    unmount(ctx.sys, mnt);
    out.push(read === "strata\n" ? _check("erofs-file", "ok", "an image file mounts directly (file-backed, no loop device)") : _check("erofs-file", "warn", "a file-backed mount showed the wrong content"));
  } catch (err) {
    out.push(_check("erofs-file", "info", `an image file does not mount directly (${(err as Error).message}): images need a loop device`));
  }
  return out;
}

/** btrfs in the kernel and its tools, and whether the store is on btrfs (what a btrfs driver needs). */
export async function checkBtrfs(ctx: ProbeContext): Promise<DoctorCheck> {
  if (!(await _filesystems()).has("btrfs")) return _check("btrfs", "info", "not in this kernel");
  const onBtrfs = fsName(ctx.sys.statfs(ctx.dir).type) === "btrfs";
  const tools = _which(_sbin("mkfs.btrfs")) !== null ? "btrfs-progs installed" : "btrfs-progs not installed";
  return _check("btrfs", onBtrfs ? "ok" : "info", `in the kernel; ${tools}; the store is ${onBtrfs ? "" : "not "}on btrfs`);
}

/** User namespaces: what `dockerd --userns-remap` and rootless setups need. */
export async function checkUserNamespaces(): Promise<DoctorCheck> {
  const max = Number((await fs.readFile("/proc/sys/user/max_user_namespaces", "utf8").catch(() => "")).trim());
  const inside = await inUserNamespace();
  if (!(max > 0)) return _check("userns", "warn", "user namespaces are off (user.max_user_namespaces = 0): --userns-remap cannot work");
  return _check("userns", "ok", `available (max ${max})${inside ? "; strata itself runs in one: overlay uses userxattr" : ""}`);
}

/** Each registered driver, initialised on a fresh Home in the temp dir: would it run here, and if not why. */
export async function checkDrivers(ctx: ProbeContext): Promise<DoctorCheck[]> {
  const out: DoctorCheck[] = [];
  const ready: string[] = [];
  for (const name of registeredDrivers()) {
    const home = path.join(ctx.dir, "drivers", name);
    try {
      const driver = await initDriver(name, { home, options: {}, uidMaps: [], gidMaps: [], sys: ctx.sys, log: silentLogger });
      await driver.cleanup();
      ready.push(name);
      out.push(_check(`driver ${name}`, "ok", "initialises here"));
    } catch (err) {
      out.push(_check(`driver ${name}`, "warn", (err as Error).message));
    }
  }
  out.push(ready.length === 0
    ? _check("driver auto", "fail", "no driver initialises on this host")
    : _check("driver auto", "ok", `would pick ${ready[0]}`));
  return out;
}
