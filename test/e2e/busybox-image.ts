/** End-to-end helpers: a busybox root filesystem as an image tar for `docker import` (no registry here). */
import * as fs from "node:fs";
import * as path from "node:path";
import { describeResult, E2EFailure, run } from "./command.ts";

/** busybox-static's binary: it needs no libraries, so it alone makes a working image. */
export const BUSYBOX_BIN = "/bin/busybox";

/** Applets used by the scenario, linked even when `busybox --list` cannot be read. */
const NEEDED_APPLETS = ["sh", "cat", "ls", "echo", "rm", "mkdir", "sleep", "test", "true", "touch", "id", "wc"];

/**
 * Build `<dir>/busybox-rootfs` and pack it as `<dir>/busybox.tar`: /bin/busybox and a symlink per
 * applet, /etc/passwd and /etc/group, /tmp (1777), /root; owned by 0:0 with fixed mtimes so the
 * tar, and so the imported layer's digest, is the same on every run.
 *
 * @example
 * ```ts
 * const tar = await makeBusyboxImageTar(root);
 * await dockerd.docker("import", tar, "e2e-busybox:base");
 * ```
 */
export async function makeBusyboxImageTar(dir: string): Promise<string> {
  const rootfs = path.join(dir, "busybox-rootfs");
  fs.mkdirSync(path.join(rootfs, "bin"), { recursive: true });
  for (const d of ["etc", "root", "proc", "sys", "dev", "home"]) fs.mkdirSync(path.join(rootfs, d), { recursive: true });
  fs.mkdirSync(path.join(rootfs, "tmp"), { recursive: true });
  fs.chmodSync(path.join(rootfs, "tmp"), 0o1777);
  fs.chmodSync(path.join(rootfs, "root"), 0o700);
  fs.copyFileSync(BUSYBOX_BIN, path.join(rootfs, "bin", "busybox"));
  fs.chmodSync(path.join(rootfs, "bin", "busybox"), 0o755);
  for (const applet of await _applets()) {
    if (applet === "busybox") continue;
    fs.symlinkSync("busybox", path.join(rootfs, "bin", applet));
  }
  fs.writeFileSync(path.join(rootfs, "etc", "passwd"), "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n");
  fs.writeFileSync(path.join(rootfs, "etc", "group"), "root:x:0:\nnogroup:x:65534:\n");
  const tar = path.join(dir, "busybox.tar");
  const res = await run([
    "tar", "--numeric-owner", "--owner=0", "--group=0", "--sort=name", "--mtime=2024-01-01 00:00:00Z",
    "-C", rootfs, "-cf", tar, ".",
  ]);
  if (res.code !== 0) throw new E2EFailure(`Cannot pack the busybox image\n${describeResult(res)}`);
  return tar;
}

async function _applets(): Promise<string[]> {
  const res = await run([BUSYBOX_BIN, "--list"], { timeoutMs: 10_000 });
  const listed = res.code === 0 ? res.stdout.split("\n").map((s) => s.trim()).filter((s) => /^[\w.[-]+$/.test(s)) : [];
  return [...new Set([...NEEDED_APPLETS, ...listed])].sort();
}
