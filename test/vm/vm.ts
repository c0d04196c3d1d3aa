/**
 * A KVM virtual machine for tests that need another kernel or a real power cut: a stock Debian
 * kernel (scripts/vm-kernel.sh), an initramfs made here (busybox-static, the kernel's modules, an
 * init script and the job), the host's `/` shared read-only over virtio-9p as the root the job runs
 * in (so bun, node_modules, the repo and dist/strata are the host's own files, nothing is copied or
 * installed), and a raw disk on virtio-blk mounted at the guest's /run/scratch (its TMPDIR). Output comes back over the
 * serial console; the job's exit status is its last line.
 *
 * The disk is opened with cache=none: what the guest wrote out reaches the image file, what it only
 * had in its own page cache is gone when qemu is SIGKILLed, as in a power cut (a disk's own volatile
 * cache is not modelled: the host keeps every write the guest issued).
 */
import { spawn, spawnSync } from "node:child_process";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";

/** The repository, as the guest sees it too (the host's `/` is its root). */
export const REPO = path.resolve(import.meta.dir, "../..");
/** The Debian releases whose stock kernel the machine can boot. */
export const RELEASES = { bookworm: "Debian 12", trixie: "Debian 13" } as const;
/** One of {@link RELEASES}. */
export type Release = keyof typeof RELEASES;
/** The line init prints after the job, with its exit status. */
const EXIT_MARK = "STRATA-VM-EXIT ";
const BUSYBOX = "/bin/busybox";
/** Where the job's namespace puts the init's own root during pivot_root, unmounted right after. */
const OLD_ROOT = "vm-old-root";

/** Why this host cannot run the machine, or undefined when it can. */
export function vmUnavailable(): string | undefined {
  if (process.getuid?.() !== 0) return "the VM tests need root (apt-get download, the 9p share of /)";
  for (const tool of ["qemu-system-x86_64", "cpio", "mkfs.ext4"]) {
    if (spawnSync("sh", ["-c", `command -v ${tool}`]).status !== 0) return `${tool} is not installed (apt-get install qemu-system-x86 cpio e2fsprogs)`;
  }
  if (!fs.existsSync(BUSYBOX)) return `${BUSYBOX} is missing (apt-get install busybox-static)`;
  return undefined;
}

/** How the machine runs: KVM, or TCG (qemu's emulator) with the reason KVM cannot be used. */
export function accel(): { kind: "kvm" | "tcg"; reason?: string } {
  const want = process.env.STRATA_VM_ACCEL;
  if (want === "kvm" || want === "tcg") return { kind: want, reason: want === "tcg" ? "STRATA_VM_ACCEL=tcg" : undefined };
  // Without a usable /dev/kvm qemu still runs the same stock kernel, emulated (~10x slower).
  try {
    fs.accessSync("/dev/kvm", fs.constants.R_OK | fs.constants.W_OK);
  } catch {
    return { kind: "tcg", reason: "this host has no usable /dev/kvm" };
  }
  // kvm_pvm (a nested "pagetable-based VM" host) runs only guests built for PVM: a stock Debian
  // kernel hangs right after its real-mode setup there, so such a host emulates instead.
  if (fs.existsSync("/sys/module/kvm_pvm") && !fs.existsSync("/sys/module/kvm_intel") && !fs.existsSync("/sys/module/kvm_amd")) {
    return { kind: "tcg", reason: "this host's /dev/kvm is kvm_pvm, which boots only PVM-built guest kernels, not Debian's" };
  }
  return { kind: "kvm" };
}

/** The kernel directory scripts/vm-kernel.sh made for `release` (made now when missing). */
export function kernelFor(release: Release): { dir: string; version: string } {
  const r = spawnSync("bash", [path.join(REPO, "scripts/vm-kernel.sh"), release], { stdio: ["ignore", "pipe", "inherit"], encoding: "utf8" });
  if (r.status !== 0) throw new Error(`scripts/vm-kernel.sh ${release} failed (exit ${r.status})`);
  const dir = r.stdout.trim().split("\n").at(-1)!;
  const marker = fs.readFileSync(path.join(dir, ".strata-kernel-complete"), "utf8");
  return { dir, version: /^package: (.*)$/m.exec(marker)?.[1] ?? "unknown" };
}

/** A sparse raw disk image of `size` (mkfs size syntax, e.g. "4G") formatted ext4. */
export function makeDisk(file: string, size: string): void {
  const r = spawnSync("mkfs.ext4", ["-q", "-F", "-E", "nodiscard", file, size], { encoding: "utf8" });
  if (r.status !== 0) throw new Error(`mkfs.ext4 ${file} failed: ${r.stderr}`);
}

/** Where the guest mounts its scratch disk (TMPDIR of the job). */
export const SCRATCH = "/run/scratch";

// The guest's first init, on the initramfs: it moves everything onto a tmpfs and switch_roots there,
// because the initramfs (rootfs) can never be left by pivot_root, which the job's root needs (below).
const INIT = `#!/bin/busybox sh
/bin/busybox mkdir -p /newroot
/bin/busybox mount -t tmpfs -o mode=0755 stage2 /newroot
/bin/busybox cp -a /bin /modules /vm /init2 /newroot/
/bin/busybox mkdir -p /newroot/proc /newroot/sys /newroot/dev
exec /bin/busybox switch_root /newroot /init2
`;

// The guest's init proper (busybox sh): modules, the 9p root with the guest's own /proc /sys /dev /run,
// the disk on SCRATCH, then the job in its own mount namespace whose root is the host's tree, made
// by pivot_root rather than chroot: setns(2) into a mount namespace (runc for \`docker exec\`,
// nsenter) lands at the namespace's root mount, which under a chroot would be this init's tmpfs, not
// the tree the job sees. \`poweroff -f\` ends qemu (-no-reboot).
const INIT2 = `#!/bin/busybox sh
/bin/busybox --install -s /bin
export PATH=/bin
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev
for m in $(cat /modules/order); do insmod /modules/$m || echo "strata-vm: insmod $m failed"; done
# Only the kernel's errors on the console: its notices (overlay refusing a probe option) would
# interleave with the job's output.
echo 3 >/proc/sys/kernel/printk
mkdir -p /host
mount -t 9p -o trans=virtio,version=9p2000.L,ro,cache=loose,msize=524288 host /host || echo "strata-vm: cannot mount the 9p root"
mount -t proc proc /host/proc
mount -t sysfs sys /host/sys
mount -t devtmpfs dev /host/dev
mkdir -p /host/dev/pts /host/dev/shm
mount -t devpts devpts /host/dev/pts
mount -t tmpfs shm /host/dev/shm
mount -t tmpfs run /host/run
# The scratch disk goes on /run/scratch, not /tmp: the host's /tmp stays visible (read-only), so a
# checkout that lives there (a CI clone in /tmp) is still the job's working directory.
mkdir -p /host${SCRATCH}
if [ -b /dev/vda ]; then
  mount -t ext4 /dev/vda /host${SCRATCH} || echo "strata-vm: cannot mount /dev/vda"
else
  mount -t tmpfs tmp /host${SCRATCH}
fi
cp -a /vm /host/run/vm
echo "strata-vm: up in $(cut -d' ' -f1 /proc/uptime) s, kernel $(uname -r)"
# Through a fifo, not the tty: programs see no terminal (no colours, no tty write quirks), and cat
# does the blocking writes to the slow serial line. The job runs in its own session, so what it
# leaves running (a daemon it started) is killed with it and cannot hold the fifo open.
mkfifo /job-out
cat /job-out >/dev/console &
cat_pid=$!
mkdir -p /host/run/${OLD_ROOT}
setsid unshare -m --propagation private sh -c 'cd /host && pivot_root . run/${OLD_ROOT} && exec /run/${OLD_ROOT}/bin/busybox chroot . /bin/bash -c "umount -l /run/${OLD_ROOT}; rmdir /run/${OLD_ROOT}; exec /bin/bash /run/vm/job.sh"' </dev/null >/job-out 2>&1 &
job=$!
wait $job
rc=$?
kill -9 -$job 2>/dev/null
wait $cat_pid
echo "${EXIT_MARK}$rc"
sync
poweroff -f
`;

/** What one boot runs. */
export interface VmOptions {
  kernelDir: string;
  /** bash, run as root in the host's tree (read-only) with a writable /run and TMPDIR (SCRATCH, the disk). */
  job: string;
  /** Extra files for the job, under /run/vm/ in the guest. */
  files?: Record<string, string | Uint8Array>;
  /** Raw disk images: the first is /dev/vda, mounted (ext4) at SCRATCH (a tmpfs when there is none); the rest vdb, vdc… */
  disks?: string[];
  memoryMiB?: number;
  cpus?: number;
  /** SIGKILL qemu after this long (a hung guest). */
  timeoutMs?: number;
  /** Each line of the serial console, as it arrives. */
  onLine?: (line: string, vm: RunningVm) => void;
}

/** How a boot ended. */
export interface VmResult {
  /** The job's exit status; null when the guest never reported one (killed, crashed, timed out). */
  exitCode: number | null;
  killed: boolean;
  lines: string[];
  ms: number;
}

/** A booted machine: its console so far, and the power switch. */
export interface RunningVm {
  /** SIGKILL qemu: the power cut. */
  kill(): void;
  readonly done: Promise<VmResult>;
}

/** Write the initramfs for one boot into `dir` and return its path. */
function _initramfs(dir: string, kernelDir: string, job: string, files: Record<string, string | Uint8Array>): string {
  const root = path.join(dir, "initramfs");
  for (const d of ["bin", "modules", "vm", "proc", "sys", "dev"]) fs.mkdirSync(path.join(root, d), { recursive: true });
  fs.copyFileSync(BUSYBOX, path.join(root, "bin/busybox"));
  fs.chmodSync(path.join(root, "bin/busybox"), 0o755);
  fs.writeFileSync(path.join(root, "init"), INIT, { mode: 0o755 });
  fs.writeFileSync(path.join(root, "init2"), INIT2, { mode: 0o755 });
  for (const name of fs.readdirSync(path.join(kernelDir, "modules"))) {
    fs.copyFileSync(path.join(kernelDir, "modules", name), path.join(root, "modules", name));
  }
  fs.writeFileSync(path.join(root, "vm/job.sh"), job);
  for (const [name, content] of Object.entries(files)) fs.writeFileSync(path.join(root, "vm", name), content);
  const out = path.join(dir, "initramfs.cpio");
  const r = spawnSync("sh", ["-c", `cd "$1" && find . | cpio -o -H newc --quiet > "$2"`, "sh", root, out]);
  if (r.status !== 0) throw new Error(`cpio failed: ${r.stderr}`);
  fs.rmSync(root, { recursive: true });
  return out;
}

/**
 * Boot once and run `job`.
 * @example
 * const vm = bootVm({ kernelDir, job: "uname -r", disks: [disk] });
 * const { exitCode, lines } = await vm.done;
 */
export function bootVm(opts: VmOptions): RunningVm {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "strata-vm-"));
  const initrd = _initramfs(dir, opts.kernelDir, opts.job, opts.files ?? {});
  const args = [
    ...(accel().kind === "kvm" ? ["-enable-kvm", "-cpu", "host"] : ["-accel", "tcg,thread=multi", "-cpu", "max"]), "-machine", "q35", "-smp", String(opts.cpus ?? 2), "-m", String(opts.memoryMiB ?? 3072),
    "-nodefaults", "-no-user-config", "-display", "none", "-serial", "stdio", "-no-reboot",
    "-kernel", path.join(opts.kernelDir, "vmlinuz"), "-initrd", initrd,
    "-append", "console=ttyS0 quiet panic=-1 rdinit=/init",
    "-virtfs", "local,path=/,mount_tag=host,security_model=none,readonly=on,multidevs=remap",
  ];
  for (const disk of opts.disks ?? []) args.push("-drive", `file=${disk},format=raw,if=virtio,cache=none,aio=threads`);
  const started = Date.now();
  const child = spawn("qemu-system-x86_64", args, { stdio: ["ignore", "pipe", "pipe"] });
  const lines: string[] = [];
  let exitCode: number | null = null;
  let killed = false;
  let partial = "";
  let stderr = "";
  const vm: RunningVm = {
    kill() {
      if (child.exitCode === null && child.signalCode === null) {
        killed = true;
        child.kill("SIGKILL");
      }
    },
    done: undefined as unknown as Promise<VmResult>,
  };
  const timer = setTimeout(() => {
    lines.push(`strata-vm: timed out after ${opts.timeoutMs} ms`);
    vm.kill();
  }, opts.timeoutMs ?? 600_000);
  child.stdout.setEncoding("utf8");
  child.stdout.on("data", (chunk: string) => {
    const parts = (partial + chunk).split("\n");
    partial = parts.pop()!;
    for (const raw of parts) {
      const line = raw.replace(/\r$/, "");
      lines.push(line);
      if (line.startsWith(EXIT_MARK)) exitCode = Number(line.slice(EXIT_MARK.length));
      opts.onLine?.(line, vm);
    }
  });
  child.stderr.setEncoding("utf8");
  child.stderr.on("data", (chunk: string) => (stderr += chunk));
  (vm as { done: Promise<VmResult> }).done = new Promise((resolve) => {
    // "close" waits for every copy of qemu's stdout; a killed qemu is done at "exit", with whatever
    // the pipe still holds read within a moment.
    let ended = false;
    child.stdout.on("end", () => (ended = true));
    child.on("exit", async (code) => {
      clearTimeout(timer);
      for (let i = 0; i < 40 && !ended; i++) await new Promise((r) => setTimeout(r, 50));
      if (partial) lines.push(partial);
      if (code !== 0 && !killed) lines.push(`strata-vm: qemu exited ${code}: ${stderr.trim()}`);
      fs.rmSync(dir, { recursive: true, force: true });
      resolve({ exitCode, killed, lines, ms: Date.now() - started });
    });
  });
  return vm;
}

/** A shell word for `s`. */
export function shellQuote(s: string): string {
  return `'${s.replaceAll("'", `'\\''`)}'`;
}

/** The job's preamble: a sane environment in the guest's chroot, in the repository. */
export function jobPrelude(env: Record<string, string> = {}): string {
  const vars = { PATH: "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", HOME: "/run/home", TMPDIR: SCRATCH, LANG: "C.UTF-8", ...env };
  return [
    "set -u",
    ...Object.entries(vars).map(([k, v]) => `export ${k}=${shellQuote(v)}`),
    'mkdir -p "$HOME"',
    `cd ${shellQuote(REPO)}`,
    "",
  ].join("\n");
}
