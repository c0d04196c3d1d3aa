/**
 * The power-cut test's program inside the machine: `dist/strata serve` on the disk mounted at /tmp,
 * driven over its socket exactly as dockerd drives it.
 *
 *   bun test/vm/power-cut-guest.ts load  --driver D [--front graphdriver|snapshotter] --seed N --log /dev/vdb
 *   bun test/vm/power-cut-guest.ts check --driver D [--front graphdriver|snapshotter] --acks FILE
 *
 * load runs Create+ApplyDiff, CreateReadWrite and Remove in a seeded random loop until the power
 * goes. Before each call it writes `PC <seq> BEGIN …` and after strata's 200 `PC <seq> ACK …` to the
 * log device, each line written and fsynced (the device is another virtio disk with cache=none, so a
 * line is in the host's image file before the next call starts): the log never claims more than
 * strata acknowledged, and at most one call is in flight at the cut.
 *
 * The snapshotter front (`strata snapshotter`, containerd's gRPC API) does Prepare, writes the
 * layer through the mounts, Commit, and Remove; its check reads committed snapshots through a View
 * and compares List with the log.
 *
 * check starts strata on the same disk after the reboot, sends Init as dockerd would, and prints
 * `PCCHECK fail <what>` for every acknowledged layer that is missing or differs from what was
 * applied, every removed layer still there, any layer no call made, and anything left in the
 * staging directory; then `PCCHECK done layers=N failed=M`.
 */
import { spawn, spawnSync } from "node:child_process";
import * as fs from "node:fs";
import * as path from "node:path";
import { rawCall } from "../helpers/raw-http.ts";
import { SnapClient } from "../helpers/snapshot-client.ts";
import type { Mount } from "../../src/snapshotter/gen/github.com/containerd/containerd/api/types/mount.ts";
import { makeTar, file } from "../helpers/layer-tar.ts";
import { type LoggedOp, expectedFrom, layerFiles, logLine, prng, viewOf } from "./power-cut-model.ts";
import { SCRATCH } from "./vm.ts";

const REPO = path.resolve(import.meta.dir, "../..");
const SOCKET = "/run/strata.sock";
const HOME = `${SCRATCH}/store`;
const STATE = `${SCRATCH}/state`;
/** The deepest chain the load builds (deep enough for lower chains, short enough to stay fast). */
const MAX_DEPTH = 6;

const args = process.argv.slice(2);
const mode = args[0];
const flag = (name: string, fallback?: string): string => {
  const at = args.indexOf(`--${name}`);
  if (at >= 0 && at + 1 < args.length) return args[at + 1];
  if (fallback !== undefined) return fallback;
  throw new Error(`power-cut-guest: --${name} is required`);
};
const driverName = flag("driver");
/** graphdriver (`strata serve`, dockerd's protocol) or snapshotter (`strata snapshotter`, containerd's). */
const front = flag("front", "graphdriver");
const SNAP_SOCKET = "/run/snapshotter.sock";
const MNT = "/run/mnt";

function say(line: string): void {
  fs.writeSync(1, `${line}\n`);
}

/** Forward the child's stderr to ours and keep its last line, to say why it exited. */
function _watch(child: ReturnType<typeof spawn>, name: string): { why?: string } {
  const state: { why?: string } = {};
  let last = "";
  child.stderr!.on("data", (d: Buffer) => {
    fs.writeSync(2, d);
    last = d.toString().trim().split("\n").at(-1) ?? last;
  });
  child.on("exit", (code, signal) => {
    state.why = `${name} exited (${code ?? signal}): ${last}`;
    say(`power-cut-guest: ${state.why}`);
  });
  return state;
}

/** Start `strata snapshotter` on the store and wait until it answers List. */
async function startSnapshotter(): Promise<SnapClient> {
  const child = spawn(path.join(REPO, "dist/strata"), ["snapshotter", "--driver", driverName, "--socket", SNAP_SOCKET, "--root", HOME, "--log-level", "warn"], {
    stdio: ["ignore", "inherit", "pipe"],
  });
  const exited = _watch(child, "strata snapshotter");
  for (let i = 0; i < 600; i++) {
    if (exited.why) throw new Error(exited.why);
    if (fs.existsSync(SNAP_SOCKET)) {
      const client = new SnapClient(SNAP_SOCKET);
      if (await client.list().then(() => true, () => false)) return client;
      client.close();
    }
    await Bun.sleep(100);
  }
  throw new Error("strata snapshotter did not answer List within 60 s");
}

/** Mount what Prepare or View returned on `target` (containerd's mount, done with mount(8)). */
function mountAll(mounts: Mount[], target: string): void {
  fs.mkdirSync(target, { recursive: true });
  for (const m of mounts) {
    const typeArgs = m.type === "bind" ? [] : ["-t", m.type];
    const r = spawnSync("mount", [...typeArgs, "-o", m.options.join(","), m.source, target], { encoding: "utf8" });
    if (r.status !== 0) throw new Error(`mount ${JSON.stringify(m)} on ${target}: ${r.stderr.trim()}`);
  }
}

function unmountAll(target: string): void {
  const r = spawnSync("umount", [target], { encoding: "utf8" });
  if (r.status !== 0) throw new Error(`umount ${target}: ${r.stderr.trim()}`);
}

/** Start the compiled binary and wait for it to answer Activate. */
async function startStrata(): Promise<void> {
  const child = spawn(path.join(REPO, "dist/strata"), ["serve", "--driver", driverName, "--socket", SOCKET, "--state-dir", STATE, "--log-level", "warn"], {
    stdio: ["ignore", "inherit", "pipe"],
  });
  const exited = _watch(child, "strata serve");
  for (let i = 0; i < 600; i++) {
    if (exited.why) throw new Error(exited.why);
    const res = await rawCall(SOCKET, "/Plugin.Activate", null).catch(() => null);
    if (res?.status === 200) return;
    await Bun.sleep(100);
  }
  throw new Error("strata did not answer Activate within 60 s");
}

/** One call; throws unless strata answered 200 with no Err. */
async function call(method: string, body: unknown, tar?: Uint8Array, query = ""): Promise<Record<string, unknown>> {
  const res = tar
    ? await rawCall(SOCKET, `/GraphDriver.${method}?${query}`, Buffer.from(tar), { chunks: Math.max(1, Math.ceil(tar.byteLength / 32_768)) })
    : await rawCall(SOCKET, `/GraphDriver.${method}`, `${JSON.stringify(body)}\n`);
  const parsed = JSON.parse(res.body.toString() || "{}") as Record<string, unknown>;
  if (res.status !== 200 || (parsed.Err ?? "") !== "") throw new Error(`${method} failed: ${res.status} ${res.body.toString()}`);
  return parsed;
}

async function tarOf(id: string): Promise<Uint8Array> {
  const items = [...layerFiles(id)].map(([name, bytes]) => {
    const [h] = file(name, "");
    return [{ ...h, size: bytes.byteLength }, bytes] as [typeof h, Uint8Array];
  });
  return await makeTar(items);
}

async function load(): Promise<void> {
  const record = recorder();
  const rnd = prng(Number(flag("seed")));
  const pick = <T>(xs: readonly T[]): T => xs[Math.floor(rnd() * xs.length)];
  const parents = new Map<string, string>();
  const filled = new Set<string>();
  const depth = (id: string): number => (id === "" ? 0 : 1 + depth(parents.get(id)!));
  let seq = 0;
  let n = 0;
  say("PC READY");
  for (;;) {
    const r = rnd();
    const images = [...filled].filter((id) => depth(id) < MAX_DEPTH);
    if (r < 0.55 || parents.size < 3) {
      const op: LoggedOp = { seq: ++seq, op: "create", id: `L${n++}`, parent: images.length === 0 || rnd() < 0.3 ? "" : pick(images) };
      record("BEGIN", op);
      await call("Create", { ID: op.id, Parent: op.parent, MountLabel: "", StorageOpt: {} });
      record("ACK", op);
      parents.set(op.id, op.parent);
      const apply: LoggedOp = { ...op, seq: ++seq, op: "apply" };
      record("BEGIN", apply);
      await call("ApplyDiff", null, await tarOf(op.id), `id=${encodeURIComponent(op.id)}&parent=${encodeURIComponent(op.parent)}`);
      record("ACK", apply);
      filled.add(op.id);
    } else if (r < 0.7 && images.length > 0) {
      const op: LoggedOp = { seq: ++seq, op: "rw", id: `C${n++}`, parent: pick(images) };
      record("BEGIN", op);
      await call("CreateReadWrite", { ID: op.id, Parent: op.parent, MountLabel: "", StorageOpt: {} });
      record("ACK", op);
      parents.set(op.id, op.parent);
    } else {
      const leaves = [...parents.keys()].filter((id) => ![...parents.values()].includes(id));
      const op: LoggedOp = { seq: ++seq, op: "remove", id: pick(leaves), parent: "" };
      op.parent = parents.get(op.id)!;
      record("BEGIN", op);
      await call("Remove", { ID: op.id });
      record("ACK", op);
      parents.delete(op.id);
      filled.delete(op.id);
    }
  }
}

/** The logged record writer: each line written at its offset of the log device and fsynced. */
function recorder(): (stage: "BEGIN" | "ACK", op: LoggedOp) => void {
  const log = fs.openSync(flag("log"), "r+");
  let offset = 0;
  return (stage, op) => {
    const line = Buffer.from(`${logLine(stage, op)}\n`);
    fs.writeSync(log, line, 0, line.length, offset);
    fs.fsyncSync(log);
    offset += line.length;
    say(logLine(stage, op));
  };
}

/**
 * The snapshotter's load, as containerd unpacks: Prepare `active/<id>` on a committed parent, write
 * the layer's files through the returned mounts (no fsync: the check holds Commit to what it
 * acknowledged), unmount, Commit as `<id>`; and Remove of committed leaves.
 */
async function loadSnapshots(client: SnapClient): Promise<void> {
  const record = recorder();
  const rnd = prng(Number(flag("seed")));
  const pick = <T>(xs: readonly T[]): T => xs[Math.floor(rnd() * xs.length)];
  const parents = new Map<string, string>();
  const depth = (id: string): number => (id === "" ? 0 : 1 + depth(parents.get(id)!));
  let seq = 0;
  let n = 0;
  say("PC READY");
  for (;;) {
    const leaves = [...parents.keys()].filter((id) => ![...parents.values()].includes(id));
    if (rnd() < 0.75 || parents.size < 3) {
      const bases = [...parents.keys()].filter((id) => depth(id) < MAX_DEPTH);
      const op: LoggedOp = { seq: ++seq, op: "prepare", id: `S${n++}`, parent: bases.length === 0 || rnd() < 0.3 ? "" : pick(bases) };
      record("BEGIN", op);
      const mounts = await client.prepare(`active/${op.id}`, op.parent);
      record("ACK", op);
      const target = path.join(MNT, op.id);
      mountAll(mounts, target);
      for (const [name, bytes] of layerFiles(op.id)) {
        fs.mkdirSync(path.dirname(path.join(target, name)), { recursive: true });
        fs.writeFileSync(path.join(target, name), bytes);
      }
      unmountAll(target);
      const commit: LoggedOp = { ...op, seq: ++seq, op: "commit" };
      record("BEGIN", commit);
      await client.commit(op.id, `active/${op.id}`);
      record("ACK", commit);
      parents.set(op.id, op.parent);
    } else {
      const op: LoggedOp = { seq: ++seq, op: "remove", id: pick(leaves), parent: "" };
      op.parent = parents.get(op.id)!;
      record("BEGIN", op);
      await client.remove(op.id);
      record("ACK", op);
      parents.delete(op.id);
    }
  }
}

/** The snapshotter's check: committed snapshots read back through a View, records against List. */
async function checkSnapshots(client: SnapClient, exp: ReturnType<typeof expectedFrom>, fail: (what: string) => void): Promise<void> {
  const flight = exp.inFlight;
  let infos: Awaited<ReturnType<SnapClient["list"]>>;
  try {
    infos = await client.list();
  } catch (err) {
    return fail(`List after the power cut: ${(err as Error).message}`);
  }
  const names = new Set(infos.map((i) => i.name));
  for (const id of exp.layers.keys()) {
    const committed = exp.filled.has(id);
    // A Commit in flight may have happened or not: either the active key or the committed name.
    const inCommit = flight?.op === "commit" && flight.id === id;
    if (committed || inCommit) {
      if (!names.has(id)) {
        if ((inCommit && names.has(`active/${id}`)) || (flight?.op === "remove" && flight.id === id)) continue;
        fail(`${id}: Commit was acknowledged but List has no such snapshot`);
        continue;
      }
      const target = path.join(MNT, `check-${id}`);
      try {
        mountAll(await client.view(`check/${id}`, id), target);
        try {
          const d = difference(filesUnder(target), viewOf(id, exp.layers, new Set([...exp.filled, id])));
          if (d) fail(`${id} (parent ${exp.layers.get(id) || "none"}): ${d}`);
        } finally {
          unmountAll(target);
        }
        await client.remove(`check/${id}`);
      } catch (err) {
        fail(`${id}: View: ${(err as Error).message}`);
      }
    } else if (!names.has(`active/${id}`)) {
      fail(`active/${id}: Prepare was acknowledged but List has no such snapshot`);
    }
  }
  for (const id of exp.removed) if (flight?.id !== id && names.has(id)) fail(`${id}: Remove was acknowledged but List still has it`);
  const known = new Set([...exp.layers.keys()].flatMap((id) => [id, `active/${id}`]));
  if (flight) known.add(flight.id).add(`active/${flight.id}`);
  for (const name of names) if (!known.has(name) && !name.startsWith("check/")) fail(`${name}: listed but no acknowledged call made it`);
}

/** Every regular file under `dir`, relative path → bytes (directories are implied by their files). */
function filesUnder(dir: string, rel = "", out = new Map<string, Uint8Array>()): Map<string, Uint8Array> {
  for (const name of fs.readdirSync(path.join(dir, rel))) {
    const p = path.join(rel, name);
    const st = fs.lstatSync(path.join(dir, p));
    if (st.isDirectory()) filesUnder(dir, p, out);
    else out.set(p, st.isFile() ? new Uint8Array(fs.readFileSync(path.join(dir, p))) : new TextEncoder().encode(`<not a file: mode ${st.mode.toString(8)}>`));
  }
  return out;
}

/** How `got` differs from `want`, or null. */
function difference(got: Map<string, Uint8Array>, want: Map<string, Uint8Array>): string | null {
  const problems: string[] = [];
  for (const [name, bytes] of want) {
    const have = got.get(name);
    if (!have) problems.push(`${name} missing`);
    else if (Buffer.compare(Buffer.from(have), Buffer.from(bytes)) !== 0) {
      const same = have.byteLength === bytes.byteLength;
      problems.push(`${name} has ${have.byteLength} bytes${same ? (have.every((b) => b === 0) ? " (all zero)" : " (other content)") : ""}, want ${bytes.byteLength}`);
    }
  }
  for (const name of got.keys()) if (!want.has(name)) problems.push(`${name} should not be there`);
  return problems.length === 0 ? null : problems.slice(0, 4).join("; ") + (problems.length > 4 ? `; and ${problems.length - 4} more` : "");
}

async function check(): Promise<void> {
  const exp = expectedFrom(fs.readFileSync(flag("acks"), "utf8").split("\n"));
  const flight = exp.inFlight;
  say(`PCCHECK expect layers=${exp.layers.size} filled=${exp.filled.size} removed=${exp.removed.size} acknowledged=${exp.acknowledged} in-flight=${flight ? `${flight.op} ${flight.id}` : "none"}`);
  let failed = 0;
  const fail = (what: string) => {
    failed++;
    say(`PCCHECK fail ${what}`);
  };
  if (front === "snapshotter") {
    let client: SnapClient | undefined;
    try {
      client = await startSnapshotter();
    } catch (err) {
      fail(`the snapshotter after the power cut: ${(err as Error).message}`);
    }
    if (client) await checkSnapshots(client, exp, fail);
    const staging = path.join(HOME, driverName, driverName === "vfs" ? "tmp" : ".tmp");
    const left = fs.existsSync(staging) ? fs.readdirSync(staging) : [];
    if (left.length > 0) fail(`${staging} still holds ${left.join(", ")} after the restart`);
    say(`PCCHECK done layers=${exp.layers.size} failed=${failed}`);
    return;
  }
  try {
    await startStrata();
    await call("Init", { Home: HOME, Opts: [], UIDMaps: [], GIDMaps: [] });
  } catch (err) {
    fail(`strata serve and Init after the power cut: ${(err as Error).message}`);
    say(`PCCHECK done layers=${exp.layers.size} failed=${failed}`);
    return;
  }
  const exists = async (id: string) => (await call("Exists", { ID: id })).Exists === true;
  const parents = new Map(exp.layers);
  if (flight && (flight.op === "create" || flight.op === "rw")) parents.set(flight.id, flight.parent);
  /** The layer's files through Get, compared with each view it may rightly show. */
  const verify = async (id: string, allowed: Array<Set<string>>) => {
    let dir: string;
    try {
      dir = String((await call("Get", { ID: id, MountLabel: "" })).Dir);
    } catch (err) {
      return fail(`${id}: Get: ${(err as Error).message}`);
    }
    try {
      const got = filesUnder(dir);
      const diffs = allowed.map((f) => difference(got, viewOf(id, parents, f)));
      if (diffs.every((d) => d !== null)) fail(`${id} (parent ${parents.get(id) || "none"}): ${diffs[0]}`);
    } finally {
      await call("Put", { ID: id }).catch((err) => fail(`${id}: Put: ${(err as Error).message}`));
    }
  };
  for (const id of exp.layers.keys()) {
    if (!(await exists(id))) {
      if (flight?.op === "remove" && flight.id === id) continue;
      fail(`${id}: acknowledged (${exp.filled.has(id) ? "ApplyDiff" : "Create"}) but does not exist`);
      continue;
    }
    // An ApplyDiff in flight may have committed or not, but never half.
    await verify(id, flight?.op === "apply" && flight.id === id ? [exp.filled, new Set([...exp.filled, id])] : [exp.filled]);
  }
  for (const id of exp.removed) if (!(flight?.id === id) && (await exists(id))) fail(`${id}: Remove was acknowledged but it exists`);
  if (flight && (flight.op === "create" || flight.op === "rw") && (await exists(flight.id))) await verify(flight.id, [exp.filled]);

  // Nothing half-made: no layer no call made, and an empty staging dir once Init has recovered.
  const [layerDir, staging] = driverName === "vfs" ? [path.join(HOME, "dir"), path.join(HOME, "tmp")] : [HOME, path.join(HOME, ".tmp")];
  const onDisk = fs.readdirSync(layerDir).filter((n) => !n.startsWith(".") && n !== "lost+found");
  for (const name of onDisk) {
    if (!exp.layers.has(name) && flight?.id !== name) fail(`${name}: on disk in ${layerDir} but no acknowledged call left it there`);
  }
  const left = fs.existsSync(staging) ? fs.readdirSync(staging) : [];
  if (left.length > 0) fail(`${staging} still holds ${left.join(", ")} after Init`);
  say(`PCCHECK done layers=${exp.layers.size} failed=${failed}`);
}

try {
  if (mode === "load" && front === "snapshotter") {
    await loadSnapshots(await startSnapshotter());
  } else if (mode === "load") {
    await startStrata();
    await call("Init", { Home: HOME, Opts: [], UIDMaps: [], GIDMaps: [] });
    await load();
  } else if (mode === "check") {
    await check();
  } else {
    throw new Error(`unknown mode ${mode}`);
  }
  process.exit(0);
} catch (err) {
  say(`PCERROR ${(err as Error).stack ?? err}`);
  process.exit(1);
}
