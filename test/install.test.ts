/**
 * install.sh as a user runs it (`curl -fsSL BASE/install.sh | sh -s -- …`: the script on stdin), with
 * the release artifacts of dist/ served from a loopback HTTP server, into a temp root.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import * as crypto from "node:crypto";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";

const REPO = path.resolve(import.meta.dir, "..");
const SCRIPT = fs.readFileSync(path.join(REPO, "install.sh"), "utf8");
const ARCH = process.arch === "arm64" ? "arm64" : "x64";
const ASSET = `strata-linux-${ARCH}`;
const DIST = path.join(REPO, "dist");
const IS_ROOT = process.getuid?.() === 0;
const which = (cmd: string) => Bun.which(cmd) ?? undefined;

/** What the fake release server answers instead of dist/'s file, per path; reset after each test. */
const overrides = new Map<string, () => Response>();
const requests: string[] = [];
let server: ReturnType<typeof Bun.serve>;
let baseUrl: string;
const temps: string[] = [];

beforeAll(() => {
  if (!fs.existsSync(path.join(DIST, ASSET))) {
    const built = Bun.spawnSync(["./compile.sh"], { cwd: REPO, stdout: "inherit", stderr: "inherit" });
    if (built.exitCode !== 0) throw new Error("./compile.sh failed");
  }
  server = Bun.serve({
    hostname: "127.0.0.1",
    port: 0,
    fetch(req) {
      const name = new URL(req.url).pathname.slice(1);
      requests.push(name);
      const override = overrides.get(name);
      if (override) return override();
      const file = path.join(DIST, name);
      if (name.includes("/") || !fs.existsSync(file)) return new Response("not found\n", { status: 404 });
      return new Response(Bun.file(file));
    },
  });
  baseUrl = `http://127.0.0.1:${server.port}`;
}, 120_000);

afterAll(() => {
  server?.stop(true);
  for (const t of temps) fs.rmSync(t, { recursive: true, force: true });
});

function tempRoot(): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "strata-install-"));
  fs.chmodSync(dir, 0o755); // readable by the unprivileged user of the not-root case
  temps.push(dir);
  return dir;
}

interface RunResult {
  code: number;
  out: string;
  err: string;
}

/** `sh -s -- ARGS` with install.sh on stdin, as `curl … | sh -s -- ARGS` runs it. */
async function install(args: string[], opts: { env?: Record<string, string>; prefix?: string[] } = {}): Promise<RunResult> {
  const proc = Bun.spawn([...(opts.prefix ?? []), "sh", "-s", "--", ...args], {
    stdin: new TextEncoder().encode(SCRIPT),
    stdout: "pipe",
    stderr: "pipe",
    env: { PATH: process.env.PATH ?? "/usr/bin:/bin", STRATA_BASE_URL: baseUrl, ...opts.env },
  });
  const [out, err, code] = await Promise.all([new Response(proc.stdout).text(), new Response(proc.stderr).text(), proc.exited]);
  overrides.clear();
  return { code, out, err };
}

/** Every file and symlink under `root`, relative, sorted. */
function files(root: string): string[] {
  return (fs.readdirSync(root, { recursive: true }) as string[])
    .filter((p) => !fs.lstatSync(path.join(root, p)).isDirectory())
    .sort();
}

/** Every file under `root` with its bytes' digest and mode: equal snapshots mean nothing changed. */
function snapshot(root: string): Record<string, string> {
  return Object.fromEntries(
    files(root).map((p) => {
      const full = path.join(root, p);
      const digest = crypto.createHash("sha256").update(fs.readFileSync(full)).digest("hex");
      return [p, `${digest} ${(fs.statSync(full).mode & 0o7777).toString(8)}`];
    }),
  );
}

function write(root: string, rel: string, text: string): void {
  fs.mkdirSync(path.dirname(path.join(root, rel)), { recursive: true });
  fs.writeFileSync(path.join(root, rel), text);
}

const read = (root: string, rel: string) => fs.readFileSync(path.join(root, rel), "utf8");

// An existing daemon.json in a user's own layout: the backup and the uninstall must keep its bytes.
const ORIGINAL = `{
    "log-driver": "journald",
    "registry-mirrors": ["https://mirror.example"],
    "experimental": false
}
`;

describe("install.sh", () => {
  const shellcheck = which("shellcheck");
  test.skipIf(!shellcheck)(`is clean under shellcheck${shellcheck ? "" : " (skipped: shellcheck is not installed: apt-get install shellcheck)"}`, () => {
    const r = Bun.spawnSync([shellcheck!, "-s", "sh", path.join(REPO, "install.sh")], { stdout: "pipe" });
    expect(r.stdout.toString()).toBe("");
    expect(r.exitCode).toBe(0);
  });

  test("installs the binary, the unit and the merged daemon.json into --root, and --uninstall undoes it", async () => {
    const root = tempRoot();
    write(root, "etc/docker/daemon.json", ORIGINAL);
    const r = await install(["--root", root]);
    expect(r.err).toBe("");
    expect(r.code).toBe(0);
    expect(r.out).toContain(`installing into ${root}: skipping systemctl`);
    expect(files(root)).toEqual([
      "etc/docker/daemon.json",
      "etc/docker/daemon.json.strata-backup",
      "etc/systemd/system/strata.service",
      "usr/local/bin/strata",
    ]);
    const bin = path.join(root, "usr/local/bin/strata");
    expect(Buffer.compare(fs.readFileSync(bin), fs.readFileSync(path.join(DIST, ASSET)))).toBe(0);
    expect(fs.statSync(bin).mode & 0o7777).toBe(0o755);
    const unit = read(root, "etc/systemd/system/strata.service");
    expect(unit).toContain("\nBefore=docker.service\n");
    expect(unit).toContain("\nExecStart=/usr/local/bin/strata serve\n");
    expect(unit).toContain("\n[Install]\nWantedBy=multi-user.target docker.service\n");
    expect(JSON.parse(read(root, "etc/docker/daemon.json"))).toEqual({
      "log-driver": "journald",
      "registry-mirrors": ["https://mirror.example"],
      experimental: true,
      "storage-driver": "strata",
    });
    expect(read(root, "etc/docker/daemon.json.strata-backup")).toBe(ORIGINAL);

    const u = await install(["--root", root, "--uninstall"]);
    expect(u.err).toBe("");
    expect(u.code).toBe(0);
    expect(files(root)).toEqual(["etc/docker/daemon.json"]);
    expect(read(root, "etc/docker/daemon.json")).toBe(ORIGINAL);
  }, 60_000);

  test("takes DESTDIR like --root, creates a missing daemon.json and removes it again", async () => {
    const root = tempRoot();
    const r = await install([], { env: { DESTDIR: root } });
    expect(r.code).toBe(0);
    expect(JSON.parse(read(root, "etc/docker/daemon.json"))).toEqual({ experimental: true, "storage-driver": "strata" });
    expect(files(root)).not.toContain("etc/docker/daemon.json.strata-backup");
    // A second run (an upgrade) must keep the first backup-less state, not back up its own merge.
    expect((await install([], { env: { DESTDIR: root } })).code).toBe(0);
    expect(files(root)).not.toContain("etc/docker/daemon.json.strata-backup");
    expect((await install(["--uninstall"], { env: { DESTDIR: root } })).code).toBe(0);
    expect(files(root)).toEqual([]);
  }, 60_000);

  test("installs nothing when the checksum does not match", async () => {
    const root = tempRoot();
    overrides.set(`${ASSET}.sha256`, () => new Response(`${"0".repeat(64)}  ${ASSET}\n`));
    const r = await install(["--root", root]);
    expect(r.code).toBe(1);
    expect(r.err).toContain(`strata-install: error: checksum mismatch for ${ASSET}: expected ${"0".repeat(64)}, got `);
    expect(r.err).toContain("nothing was installed");
    expect(files(root)).toEqual([]);
  }, 60_000);

  test("installs nothing when the download fails (404)", async () => {
    const root = tempRoot();
    overrides.set(ASSET, () => new Response("gone\n", { status: 404 }));
    const r = await install(["--root", root]);
    expect(r.code).toBe(1);
    expect(r.err).toContain("404");
    expect(r.err).toContain(`strata-install: error: cannot download ${baseUrl}/${ASSET} (see the error above); nothing was installed`);
    expect(files(root)).toEqual([]);
  }, 60_000);

  const wget = which("wget");
  test.skipIf(!wget)(`downloads with wget where curl is missing${wget ? "" : " (skipped: wget is not installed)"}`, async () => {
    // A PATH holding everything of this machine's bin directories except curl.
    const bin = tempRoot();
    for (const dir of ["/usr/local/sbin", "/usr/local/bin", "/usr/sbin", "/usr/bin", "/sbin", "/bin"]) {
      if (!fs.existsSync(dir)) continue;
      for (const name of fs.readdirSync(dir)) {
        // lstat, not exists: a link such as /usr/bin/X11 -> . seen again through /bin must not be made twice.
        if (name === "curl" || fs.lstatSync(path.join(bin, name), { throwIfNoEntry: false })) continue;
        fs.symlinkSync(path.join(dir, name), path.join(bin, name));
      }
    }
    const root = tempRoot();
    const r = await install(["--root", root], { env: { PATH: bin } });
    expect(r.code).toBe(0);
    expect(Buffer.compare(fs.readFileSync(path.join(root, "usr/local/bin/strata")), fs.readFileSync(path.join(DIST, ASSET)))).toBe(0);
    // wget -nv reports each download on stderr: proof it, not curl, fetched them.
    expect(r.err).toContain(`${baseUrl}/${ASSET}`);

    overrides.set(ASSET, () => new Response("gone\n", { status: 404 }));
    const missing = await install(["--root", tempRoot()], { env: { PATH: bin } });
    expect(missing.code).toBe(1);
    expect(missing.err).toContain("404");
  }, 60_000);

  const setpriv = which("setpriv");
  test.skipIf(IS_ROOT && !setpriv)(`refuses to install to / when not root, before downloading${IS_ROOT && !setpriv ? " (skipped: no setpriv to drop root)" : ""}`, async () => {
    requests.length = 0;
    const prefix = IS_ROOT ? [setpriv!, "--reuid=65534", "--regid=65534", "--clear-groups"] : [];
    const r = await install([], { prefix });
    expect(r.code).toBe(1);
    expect(r.err).toBe("strata-install: error: installing to / must be run as root (sudo sh install.sh), or pass --root DIR to install into a directory\n");
    expect(requests).toEqual([]);
  }, 60_000);

  test("refuses to hide images under another storage driver unless --force", async () => {
    const root = tempRoot();
    const config = '{"storage-driver": "overlay2", "log-level": "warn"}\n';
    write(root, "etc/docker/daemon.json", config);
    write(root, `var/lib/docker/image/overlay2/imagedb/content/sha256/${"1".repeat(64)}`, "{}");
    const before = snapshot(root);

    const r = await install(["--root", root]);
    expect(r.code).toBe(1);
    expect(r.err).toContain('daemon.json sets "storage-driver": "overlay2" and the daemon has 1 image under /var/lib/docker/overlay2');
    expect(r.err).toContain("invisible");
    expect(r.err).toContain("pass --force to switch anyway");
    expect(r.err).toContain("strata-install: error: nothing was installed");
    expect(snapshot(root)).toEqual(before);

    const forced = await install(["--root", root, "--force"]);
    expect(forced.code).toBe(0);
    expect(forced.err).toContain("strata: warning: daemon.json sets \"storage-driver\": \"overlay2\"");
    expect(JSON.parse(read(root, "etc/docker/daemon.json"))).toEqual({ "storage-driver": "strata", "log-level": "warn", experimental: true });

    expect((await install(["--root", root, "--uninstall"])).code).toBe(0);
    expect(snapshot(root)).toEqual(before);
  }, 60_000);

  test("--dry-run prints what it would do and changes nothing, installing or uninstalling", async () => {
    const root = tempRoot();
    write(root, "etc/docker/daemon.json", ORIGINAL);
    const before = snapshot(root);
    const r = await install(["--root", root, "--dry-run"]);
    expect(r.code).toBe(0);
    expect(r.out).toContain(`would install ${ASSET} as ${root}/usr/local/bin/strata (mode 0755)`);
    expect(r.out).toContain(`would write ${root}/etc/systemd/system/strata.service:\n[Unit]\n`);
    expect(r.out).toContain('would write /etc/docker/daemon.json:\n{\n  "log-driver": "journald",');
    expect(r.out).toContain('"storage-driver": "strata"');
    expect(r.out).toContain("dry run: nothing was changed");
    expect(snapshot(root)).toEqual(before);

    expect((await install(["--root", root])).code).toBe(0);
    const installed = snapshot(root);
    const u = await install(["--root", root, "--uninstall", "--dry-run"]);
    expect(u.code).toBe(0);
    expect(u.out).toContain(`would write /etc/docker/daemon.json:\n${ORIGINAL}`);
    expect(u.out).toContain(`would run: rm -f ${root}/usr/local/bin/strata`);
    expect(snapshot(root)).toEqual(installed);
  }, 60_000);

  // The installer writes into these: each must exist so a tmpfs can cover it (never write the host's).
  const covered = ["/usr/local/bin", "/etc/systemd/system", "/etc/docker"];
  const realRootSkip = !IS_ROOT
    ? "needs root (a private mount namespace stands in for the real /)"
    : fs.existsSync("/run/systemd/system")
      ? "systemd runs on this machine: the real-root install would enable a unit on it"
      : !which("unshare")
        ? "unshare is not installed"
        : covered.find((d) => !fs.existsSync(d))?.replace(/^/, "no directory ").concat(" to cover with a tmpfs");
  test.skipIf(!!realRootSkip)(`on the real root without systemd: installs, and says how to start strata${realRootSkip ? ` (skipped: ${realRootSkip})` : ""}`, async () => {
    // tmpfs over the directories the installer writes, in a mount namespace that dies with the command.
    const out = tempRoot();
    // The host's images under /var/lib/docker would (rightly) make the installer refuse: hide them too.
    const dirs = [...covered, ...(fs.existsSync("/var/lib/docker") ? ["/var/lib/docker"] : [])];
    const script =
      dirs.map((d) => `mount -t tmpfs tmpfs ${d}`).join(" && ") +
      ` && sh -s && cp -a /usr/local/bin/strata /etc/systemd/system/strata.service /etc/docker/daemon.json ${out}/`;
    const r = await install([], { prefix: ["unshare", "--mount", "--propagation", "private", "sh", "-c", `${script}`, "unshare-sh"] });
    expect(r.code).toBe(0);
    expect(r.err).toContain("strata-install: warning: systemd is not running: strata.service is installed but not enabled; start strata before dockerd yourself, e.g.: /usr/local/bin/strata serve &");
    expect(files(out)).toEqual(["daemon.json", "strata", "strata.service"]);
    expect(Buffer.compare(fs.readFileSync(path.join(out, "strata")), fs.readFileSync(path.join(DIST, ASSET)))).toBe(0);
    expect(JSON.parse(read(out, "daemon.json"))).toEqual({ experimental: true, "storage-driver": "strata" });
  }, 60_000);
});

describe("release artifacts", () => {
  test(`dist/${ASSET} is dist/strata, and every .sha256 matches its file`, () => {
    expect(Buffer.compare(fs.readFileSync(path.join(DIST, ASSET)), fs.readFileSync(path.join(DIST, "strata")))).toBe(0);
    const sums = fs.readdirSync(DIST).filter((f) => f.endsWith(".sha256"));
    expect(sums).toContain(`${ASSET}.sha256`);
    for (const sum of sums) {
      const r = Bun.spawnSync(["sha256sum", "--check", "--strict", sum], { cwd: DIST, stdout: "pipe", stderr: "pipe" });
      expect(r.stdout.toString()).toBe(`${sum.slice(0, -".sha256".length)}: OK\n`);
    }
  });

  test("dist/plugin: the socket where dockerd looks, state under the propagated mount, a rootfs of the binary, mkfs.ext4 and what they link", () => {
    const config = JSON.parse(fs.readFileSync(path.join(DIST, "plugin", "config.json"), "utf8"));
    expect(config.interface).toEqual({ types: ["docker.graphdriver/1.0"], socket: "strata.sock" });
    const entry: string[] = config.entrypoint;
    const flag = (name: string) => entry[entry.indexOf(name) + 1];
    // dockerd mounts the plugin's runtime directory at /run/docker/plugins and dials interface.socket there.
    expect(flag("--socket")).toBe("/run/docker/plugins/strata.sock");
    // Only the propagated mount outlives the plugin's container: Init's state must be kept there.
    expect(flag("--state-dir")).toStartWith(`${config.propagatedMount}/`);
    expect(config.network).toEqual({ type: "host" });
    const rootfs = path.join(DIST, "plugin", "rootfs");
    // mkfs.ext4 formats size-limited layers; compile.sh bundles it when the build host has it.
    const mkfs = which("mkfs.ext4");
    const lddOf = (bin: string) => {
      const out = Bun.spawnSync(["ldd", bin], { stdout: "pipe" }).stdout.toString();
      return [...out.matchAll(/(?:=> |^\s*)(\/\S+)/gm)].map((m) => m[1]!.slice(1));
    };
    const linked = lddOf(path.join(DIST, "strata"));
    expect(linked.some((l) => l.endsWith("/libc.so.6"))).toBe(true);
    const bundled = mkfs ? ["usr/sbin/mkfs.ext4", ...lddOf(mkfs)] : [];
    expect(files(rootfs)).toEqual([...new Set(["strata", ...linked, ...bundled])].sort());
    expect(config.linux.devices).toEqual([{ path: "/dev/loop-control" }]);
    expect(Buffer.compare(fs.readFileSync(path.join(rootfs, "strata")), fs.readFileSync(path.join(DIST, "strata")))).toBe(0);
  });

  const qemu = which("qemu-aarch64-static") ?? which("qemu-aarch64");
  const arm = path.join(DIST, "strata-linux-arm64");
  const armSkip =
    ARCH === "arm64" ? "this machine is arm64" :
    !fs.existsSync(arm) ? "dist/strata-linux-arm64 was not built (compile.sh says why)" :
    !qemu ? "qemu-user-static is not installed" :
    !fs.existsSync("/usr/aarch64-linux-gnu/lib") ? "libc6-arm64-cross is not installed" : undefined;
  test.skipIf(!!armSkip)(`strata-linux-arm64 reports its version under qemu${armSkip ? ` (skipped: ${armSkip})` : ""}`, () => {
    const r = Bun.spawnSync([qemu!, "-L", "/usr/aarch64-linux-gnu", arm, "version"], { stdout: "pipe", stderr: "pipe" });
    expect(r.stdout.toString()).toMatch(/^strata \d+\.\d+\.\d+ \(commit \S+, runtime bun\)\n$/);
  });
});
