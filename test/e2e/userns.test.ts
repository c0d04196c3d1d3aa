/**
 * A dockerd started with `--userns-remap=default` on strata (the compiled binary): Init then carries
 * the dockremap user's subordinate ids as UIDMaps/GIDMaps. Containers run as the remapped root, so
 * layers must hold host ids on disk (the remapped root owns every layer's `/`), and the layers the
 * daemon commits and saves must hold container ids again.
 *
 * STRATA_E2E=1             run at all (needs root and docker.io 20.10)
 * STRATA_E2E_DRIVER=vfs    strata's --driver (default vfs)
 *
 * dockerd creates the `dockremap` user and its /etc/subuid and /etc/subgid ranges itself the first
 * time (useradd, usermod); both stay on the host afterwards, as they would after any such daemon.
 */
import { afterAll, describe, expect, test } from "bun:test";
import { spawnSync } from "node:child_process";
import * as fs from "node:fs";
import * as path from "node:path";
import { readTar } from "../../src/archive/tar-reader.ts";
import { streamOf } from "../helpers/layer-tar.ts";
import { check, E2EEnv, e2eUnavailableReason, makeBusyboxImageTar, printed, REPO_ROOT, succeeded } from "./harness.ts";
import { layerDirs } from "./scenario-helpers.ts";
import { skipUnlessAsked } from "./gate.ts";

const driver = process.env.STRATA_E2E_DRIVER || "vfs";
const binary = path.join(REPO_ROOT, "dist/strata");
const skip = skipUnlessAsked(e2eUnavailableReason() ?? (fs.existsSync(binary) ? undefined : "dist/strata is not built: run ./compile.sh"), "the user-namespace tests");
const IMG = "e2e-busybox:base";
const COMMITTED = "e2e-busybox:userns-committed";
const REMAP_USER = "dockremap";

/** The first subordinate range of `user` in /etc/subuid or /etc/subgid: [start, count]. */
function subordinateRange(file: string, user: string): [number, number] | undefined {
  const text = fs.existsSync(file) ? fs.readFileSync(file, "utf8") : "";
  const line = text.split("\n").find((l) => l.startsWith(`${user}:`));
  if (!line) return undefined;
  const [, start, count] = line.split(":");
  return [Number(start), Number(count)];
}

/** [uid, gid] of a host path. */
function owner(p: string): [number, number] {
  const st = fs.lstatSync(p);
  return [st.uid, st.gid];
}

/** Every member of an uncompressed tar file, read with strata's own tar reader: name → [uid, gid, bytes]. */
async function tarEntries(bytes: Uint8Array): Promise<Map<string, { uid: number; gid: number; body: Uint8Array }>> {
  const out = new Map<string, { uid: number; gid: number; body: Uint8Array }>();
  for await (const e of readTar(streamOf(bytes))) {
    const chunks: Uint8Array[] = [];
    for await (const c of e.body) chunks.push(c);
    out.set(e.header.name.replace(/^\.\//, "").replace(/\/$/, ""), { uid: e.header.uid, gid: e.header.gid, body: Buffer.concat(chunks) });
  }
  return out;
}

/** The directory a layer's files are in on the host, from `docker inspect`'s GraphDriver.Data. */
/**
 * Run `fn` on the layer's own files: overlay reports its upper dir, vfs the whole layer, erofs an
 * image layer's image (mounted read-only for the call).
 */
async function withLayerRoot<T>(data: Record<string, string>, fn: (dir: string) => T | Promise<T>): Promise<T> {
  const dir = data.UpperDir ?? data.Dir;
  if (dir) return await fn(dir);
  if (!data.Image) throw new Error(`GraphDriver.Data names no layer directory: ${JSON.stringify(data)}`);
  const mnt = fs.mkdtempSync(path.join(path.dirname(data.Image), ".e2e-mnt-"));
  const mounted = spawnSync("mount", ["-t", "erofs", "-o", "ro", data.Image, mnt], { encoding: "utf8" });
  if (mounted.status !== 0) throw new Error(`cannot mount ${data.Image}: ${mounted.stderr}`);
  try {
    return await fn(mnt);
  } finally {
    spawnSync("umount", [mnt]);
    fs.rmdirSync(mnt);
  }
}

describe(`plugin (${driver}) on a dockerd with --userns-remap=default`, () => {
  if (skip) {
    test.skipIf(true)(`the whole scenario (skipped: ${skip})`, () => {});
    return;
  }
  let env: E2EEnv;
  let notRun: string | undefined;
  let failed = 0;
  let uidBase = 0;
  let gidBase = 0;
  let home = "";
  const logs = () => env.logs();
  const docker = (...args: string[]) => env.dockerd.docker(...args);
  const inspectData = async (kind: string, ref: string) =>
    JSON.parse(succeeded(await docker(kind, "inspect", "--format", "{{json .GraphDriver.Data}}", ref), logs)) as Record<string, string>;

  /** One step in order; after a fatal step fails the rest say so instead of running. */
  const step = (name: string, fn: () => Promise<void>, timeoutMs = 120_000, fatal = false) =>
    test(name, async () => {
      if (notRun) throw new Error(`Not run: ${notRun}`);
      failed++;
      if (fatal) notRun = `"${name}" did not finish`;
      await fn();
      failed--;
      if (fatal) notRun = undefined;
    }, timeoutMs);

  afterAll(async () => {
    if (!env) return;
    if (failed > 0 || process.env.STRATA_E2E_KEEP_LOGS === "1") {
      console.error(`[e2e userns] logs kept in ${env.keepLogs()}`);
    }
    const report = await env.teardown().catch((err: Error) => {
      console.error(`[e2e userns] teardown failed: ${err.message}`);
      return undefined;
    });
    if (report && (report.killed.length || report.unmounted.length)) {
      console.error(`[e2e userns] teardown had to kill ${JSON.stringify(report.killed)} and unmount ${JSON.stringify(report.unmounted)}`);
    }
  }, 120_000);

  step("starts a remapping dockerd on the plugin, which gets the dockremap ranges as maps", async () => {
    env = await E2EEnv.create({ plugin: { command: [binary], driver } }, { extraArgs: ["--userns-remap=default"] });
    // dockerd refuses a data-root whose parents the remapped root cannot pass through; a temp root is 0700.
    fs.chmodSync(env.root, 0o711);
    await env.start();
    printed(await docker("info", "--format", "{{.Driver}}"), env.driverName, logs);
    const security = succeeded(await docker("info", "--format", "{{json .SecurityOptions}}"), logs);
    check(security.includes("name=userns"), "docker info does not list userns among the security options", security, logs);
    const uids = subordinateRange("/etc/subuid", REMAP_USER);
    const gids = subordinateRange("/etc/subgid", REMAP_USER);
    check(uids !== undefined && gids !== undefined, `dockerd made no /etc/subuid and /etc/subgid ranges for ${REMAP_USER}`, "", logs);
    [uidBase, gidBase] = [uids[0], gids[0]];
    // The daemon keeps a remapped daemon's data in <data-root>/<uid>.<gid>/, the plugin's Home included.
    home = path.join(env.dockerd.dataRoot, `${uidBase}.${gidBase}`, env.driverName);
    check(fs.existsSync(home), `The plugin's Home is not at ${home}`, fs.readdirSync(env.dockerd.dataRoot).join("\n"), logs);
  }, 180_000, true);

  step("imports busybox into a layer owned by the remapped root", async () => {
    succeeded(await docker("import", "--change", 'CMD ["/bin/sh"]', await makeBusyboxImageTar(env.root), IMG), logs);
    await withLayerRoot(await inspectData("image", IMG), (dir) => {
      expect(owner(dir)).toEqual([uidBase, gidBase]);
      expect(owner(path.join(dir, "bin/busybox"))).toEqual([uidBase, gidBase]);
      expect(owner(path.join(dir, "etc/passwd"))).toEqual([uidBase, gidBase]);
    });
  }, 120_000, true);

  step("runs a container as root inside and the remapped root outside", async () => {
    const out = succeeded(await docker("run", "--name", "c-userns", "--network", "none", IMG, "sh", "-c",
      "echo hello-userns > /data.txt && mkdir /home/u && echo u > /home/u/f && chown -R 1000:1000 /home/u && id -u && cat /data.txt"), logs);
    check(out === "0\nhello-userns\n", "the container should see itself as uid 0 and read its own file", out, logs);
    await withLayerRoot(await inspectData("container", "c-userns"), (dir) => {
      expect(owner(path.join(dir, "data.txt"))).toEqual([uidBase, gidBase]);
      expect(owner(path.join(dir, "home/u/f"))).toEqual([uidBase + 1000, gidBase + 1000]);
      expect(fs.readFileSync(path.join(dir, "data.txt"), "utf8")).toBe("hello-userns\n");
    });
  }, 120_000, true);

  step("lists the container's changes with docker diff", async () => {
    const lines = succeeded(await docker("diff", "c-userns"), logs).trim().split("\n").sort();
    expect(lines).toEqual(["A /data.txt", "A /home/u", "A /home/u/f", "C /home"]);
  });

  step("commits the container and runs the committed image", async () => {
    succeeded(await docker("commit", "c-userns", COMMITTED), logs);
    // The commit went Diff (host → container ids) then ApplyDiff (container → host ids) again.
    await withLayerRoot(await inspectData("image", COMMITTED), (dir) => {
      expect(owner(path.join(dir, "data.txt"))).toEqual([uidBase, gidBase]);
      expect(owner(path.join(dir, "home/u/f"))).toEqual([uidBase + 1000, gidBase + 1000]);
    });
    printed(await docker("run", "--rm", "--network", "none", COMMITTED, "sh", "-c", "cat /data.txt; stat -c %u:%g /home/u/f; id -u"),
      "hello-userns\n1000:1000\n0", logs);
  }, 120_000, true);

  step("saves the committed image with container ids in its layer tar", async () => {
    const file = path.join(env.root, "saved.tar");
    succeeded(await docker("save", "-o", file, COMMITTED), logs);
    const saved = await tarEntries(fs.readFileSync(file));
    const manifest = JSON.parse(new TextDecoder().decode(saved.get("manifest.json")!.body)) as [{ Layers: string[] }];
    const top = saved.get(manifest[0].Layers.at(-1)!);
    check(top !== undefined, "docker save's manifest names a layer the archive lacks", [...saved.keys()].join("\n"), logs);
    const layer = await tarEntries(top.body);
    const owners = Object.fromEntries([...layer].map(([name, e]) => [name, [e.uid, e.gid]]));
    expect(owners).toEqual({ "data.txt": [0, 0], home: [0, 0], "home/u": [1000, 1000], "home/u/f": [1000, 1000] });
    expect(new TextDecoder().decode(layer.get("data.txt")!.body)).toBe("hello-userns\n");
  });

  step("removes containers and images, leaving no layer directories, and stops without mounts", async () => {
    check(layerDirs(home).length > 0, `No layer directories under ${home}: the check below would prove nothing`, "", logs);
    succeeded(await docker("rm", "c-userns"), logs);
    succeeded(await docker("rmi", COMMITTED, IMG), logs);
    printed(await docker("images", "-aq"), "", logs);
    expect(layerDirs(home)).toEqual([]);
    const exit = await env.dockerd.stop();
    check(!exit.killed && exit.code === 0, `dockerd did not stop cleanly on SIGTERM: ${JSON.stringify(exit)}`, "", logs);
    const pexit = await env.plugin!.stop();
    check(!pexit.forced && pexit.code === 0, `The plugin did not exit 0 on SIGTERM: ${JSON.stringify(pexit)}`, "", logs);
    expect(env.mounts()).toEqual([]);
  }, 180_000);
});
