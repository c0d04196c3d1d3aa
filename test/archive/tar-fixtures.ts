/**
 * Test fixtures for the tar codec: one catalogue of awkward entries, archives of it made by python
 * tarfile and by GNU tar, and a listing of any archive made by python's tarfile, the independent
 * reader our results are compared against.
 */
import { afterEach } from "bun:test";
import { spawnSync } from "node:child_process";
import { createHash } from "node:crypto";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { readTar, type TarLimits } from "../../src/archive/tar-reader.ts";
import type { TarHeader } from "../../src/archive/tar-types.ts";
import { entry, streamOf } from "../helpers/layer-tar.ts";

/** One archive member with its content. */
export interface Item {
  header: TarHeader;
  content: Uint8Array;
}

/** What a user could observe of one member; the same shape from our reader and from python. */
export interface Listing {
  name: string;
  type: string;
  mode: number;
  uid: number;
  gid: number;
  uname: string;
  gname: string;
  size: number;
  mtime: [number, number];
  linkname: string;
  devmajor: number;
  devminor: number;
  xattrs: Record<string, string>;
  sha256: string;
}

/** True when running as root (device nodes, chown, security.* xattrs need it). */
export const isRoot = process.getuid?.() === 0;

/** Bytes 0..n-1 of a fixed pattern. */
export function pattern(n: number, seed = 7): Uint8Array {
  const out = new Uint8Array(n);
  for (let i = 0; i < n; i++) out[i] = (i * seed + (i >> 8)) & 0xff;
  return out;
}

const T = { sec: 1_600_000_000, nsec: 123_456_789 };
const text = (s: string) => new TextEncoder().encode(s);
const ALL_BYTES = Uint8Array.from({ length: 256 }, (_, i) => i);
// A valid VFS_CAP_REVISION_2 value (cap_net_bind_service, effective): the kernel checks the layout.
const CAPABILITY = Uint8Array.from([1, 0, 0, 2, 0, 4, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
const LONG_DIR = `long/${"n".repeat(120)}`;

/** Every kind of entry strata must carry through intact. */
export function catalogue(): Item[] {
  const item = (h: Partial<TarHeader> & { name: string }, content: Uint8Array = new Uint8Array(0)): Item => ({
    header: entry({ mtime: T, size: content.byteLength, ...h }),
    content,
  });
  return [
    item({ name: "d", type: "directory", mode: 0o755 }),
    item({ name: "d/plain.txt", uid: 70000, gid: 70001, uname: "builder", gname: "staff" }, text("hello\n")),
    item({ name: "d/caps", mode: 0o755, xattrs: new Map([["user.bin", ALL_BYTES], ["security.capability", CAPABILITY]]) }, text("#!/bin/sh\n")),
    item({ name: "d/héllo-世界.txt" }, text("utf-8 name\n")),
    item({ name: "d/link", type: "symlink", mode: 0o777, linkname: `../${"t".repeat(200)}` }),
    item({ name: "d/hard", type: "link", linkname: "d/plain.txt" }),
    item({ name: "d/fifo", type: "fifo", mode: 0o600 }),
    item({ name: "d/block-512" }, pattern(512)),
    item({ name: "d/block-513" }, pattern(513)),
    item({ name: "d/big" }, pattern(1_500_000)),
    item({ name: "d/bigid", uid: 3_000_000, gid: 3_000_001 }, text("big ids\n")),
    item({ name: "d/old", mtime: { sec: -31_536_000, nsec: 500_000_000 } }, text("1969\n")),
    item({ name: "d/whole-second", mtime: { sec: 1_600_000_000, nsec: 0 } }),
    item({ name: "long", type: "directory", mode: 0o755 }),
    item({ name: LONG_DIR, type: "directory", mode: 0o755 }),
    item({ name: `${LONG_DIR}/${"m".repeat(150)}` }, text("long name\n")),
    item({ name: "dev", type: "directory", mode: 0o755 }),
    item({ name: "dev/null", type: "char", mode: 0o666, devmajor: 1, devminor: 3 }),
    item({ name: "dev/sda", type: "block", mode: 0o660, devmajor: 8, devminor: 0 }),
    item({ name: "modes", type: "directory", mode: 0o2755 }),
    item({ name: "modes/suid", mode: 0o4755 }, text("suid\n")),
    item({ name: "modes/tmp", type: "directory", mode: 0o1777 }),
    item({ name: "modes/all", mode: 0o7777 }),
    item({ name: "modes/empty", mode: 0o400 }),
  ];
}

/** Names at the top of the catalogue, for GNU tar's command line. */
export const TOP_LEVEL = ["d", "long", "dev", "modes"];

/** A fresh temp directory; remove it with `fs.rmSync(dir, { recursive: true, force: true })`. */
export function tempDir(): string {
  return fs.mkdtempSync(path.join(os.tmpdir(), "strata-tar-"));
}

/** Whether GNU tar is on the machine (tests comparing with it skip, saying so, when not). */
export const hasGnuTar = spawnSync("tar", ["--version"]).stdout?.toString().includes("GNU tar") ?? false;
/** Whether python3 is on the machine (its tarfile module is the second reference implementation). */
export const hasPython = spawnSync("python3", ["--version"]).status === 0;
/** Tests that run python or GNU tar: starting python alone can take half a second on a cold machine. */
export const SPAWN_TIMEOUT = 30_000;

/** Temp directories removed after each test of the calling file: call at its top level, use the result in tests. */
export function tempDirsPerTest(): () => string {
  let dirs: string[] = [];
  afterEach(() => {
    for (const d of dirs) fs.rmSync(d, { recursive: true, force: true });
    dirs = [];
  });
  return () => {
    const d = tempDir();
    dirs.push(d);
    return d;
  };
}

/** Run a command; its stdout, or an Error carrying its stderr. */
export function run(cmd: string, args: string[], opts: { cwd?: string; input?: string } = {}): Buffer {
  const r = spawnSync(cmd, args, { cwd: opts.cwd, input: opts.input, maxBuffer: 1 << 30 });
  if (r.status !== 0) throw new Error(`${cmd} ${args.join(" ")} exited ${r.status}: ${r.stderr}`);
  return r.stdout;
}

const hex = (b: Uint8Array) => Buffer.from(b).toString("hex");
function specOf(items: Item[]): string {
  return JSON.stringify(items.map(({ header: h, content }) => ({
    ...h,
    xattrs: Object.fromEntries([...h.xattrs].map(([k, v]) => [k, hex(v)])),
    content: hex(content),
  })));
}

const PY_WRITE = `
import json, sys, tarfile, io
from decimal import Decimal
fmt = {"pax": tarfile.PAX_FORMAT, "gnu": tarfile.GNU_FORMAT}[sys.argv[2]]
types = {"file": tarfile.REGTYPE, "link": tarfile.LNKTYPE, "symlink": tarfile.SYMTYPE, "char": tarfile.CHRTYPE,
         "block": tarfile.BLKTYPE, "directory": tarfile.DIRTYPE, "fifo": tarfile.FIFOTYPE}
with tarfile.open(sys.argv[1], "w", format=fmt) as tar:
    for e in json.load(sys.stdin):
        ti = tarfile.TarInfo(e["name"])
        ti.type = types[e["type"]]
        ti.mode, ti.uid, ti.gid = e["mode"], e["uid"], e["gid"]
        ti.uname, ti.gname = e.get("uname") or "", e.get("gname") or ""
        ti.linkname, ti.devmajor, ti.devminor = e["linkname"], e["devmajor"], e["devminor"]
        sec, nsec = e["mtime"]["sec"], e["mtime"]["nsec"]
        ti.mtime = sec
        pax = {}
        if nsec:
            pax["mtime"] = str(Decimal(sec) + Decimal(nsec) / Decimal(10**9))
        for k, v in e["xattrs"].items():
            pax["SCHILY.xattr." + k] = bytes.fromhex(v).decode("utf-8", "surrogateescape")
        ti.pax_headers = pax
        data = bytes.fromhex(e["content"])
        ti.size = len(data)
        tar.addfile(ti, io.BytesIO(data) if data else None)
`;

/** Write `items` as a tar with python's tarfile ("pax": POSIX with xattrs; "gnu": GNU long names, base-256). */
export function pythonWrite(items: Item[], format: "pax" | "gnu", file: string): void {
  run("python3", ["-c", PY_WRITE, file, format], { input: specOf(items) });
}

const PY_LIST = `
import hashlib, json, sys, tarfile
from decimal import Decimal
names = {tarfile.REGTYPE: "file", tarfile.AREGTYPE: "file", tarfile.CONTTYPE: "file", tarfile.LNKTYPE: "link",
         tarfile.SYMTYPE: "symlink", tarfile.CHRTYPE: "char", tarfile.BLKTYPE: "block", tarfile.DIRTYPE: "directory",
         tarfile.FIFOTYPE: "fifo"}
out = []
with tarfile.open(sys.argv[1]) as tar:
    for m in tar:
        t = Decimal(m.pax_headers["mtime"]) if "mtime" in m.pax_headers else Decimal(int(m.mtime))
        sec = int(t.to_integral_value(rounding="ROUND_FLOOR"))
        data = tar.extractfile(m).read() if m.isreg() else b""
        out.append({
            "name": m.name, "type": names.get(m.type, repr(m.type)), "mode": m.mode & 0o7777, "uid": m.uid, "gid": m.gid,
            "uname": m.uname, "gname": m.gname, "size": len(data), "mtime": [sec, int((t - sec) * 10**9)],
            "linkname": m.linkname, "devmajor": m.devmajor, "devminor": m.devminor,
            "xattrs": {k[len("SCHILY.xattr."):]: v.encode("utf-8", "surrogateescape").hex()
                       for k, v in m.pax_headers.items() if k.startswith("SCHILY.xattr.")},
            "sha256": hashlib.sha256(data).hexdigest(),
        })
json.dump(out, sys.stdout)
`;

/** The archive's members as python's tarfile sees them. */
export function pythonList(file: string): Listing[] {
  return JSON.parse(run("python3", ["-c", PY_LIST, file]).toString());
}

/** A header as a Listing (directory names without their trailing slash, as python reports them). */
export function listingOf(h: TarHeader, content: Uint8Array): Listing {
  return {
    name: h.type === "directory" ? h.name.replace(/\/+$/, "") : h.name,
    type: h.type,
    mode: h.mode,
    uid: h.uid,
    gid: h.gid,
    uname: h.uname ?? "",
    gname: h.gname ?? "",
    size: h.size,
    mtime: [h.mtime.sec, h.mtime.nsec],
    linkname: h.linkname,
    devmajor: h.devmajor,
    devminor: h.devminor,
    xattrs: Object.fromEntries([...h.xattrs].map(([k, v]) => [k, hex(v)])),
    sha256: createHash("sha256").update(content).digest("hex"),
  };
}

/** Read a whole archive with our reader, delivered in `chunk`-byte pieces. */
export async function readItems(bytes: Uint8Array, chunk = 25_000, limits?: TarLimits): Promise<Item[]> {
  const items: Item[] = [];
  for await (const { header, body } of readTar(streamOf(bytes, chunk), limits)) {
    const parts: Uint8Array[] = [];
    for await (const c of body) parts.push(c);
    items.push({ header, content: new Uint8Array(Buffer.concat(parts)) });
  }
  return items;
}

/** Our reader's listing of an archive. */
export async function ourList(bytes: Uint8Array, chunk?: number): Promise<Listing[]> {
  return (await readItems(bytes, chunk)).map((i) => listingOf(i.header, i.content));
}

const PY_MATERIALIZE = `
import json, os, sys
root, root_user = sys.argv[1], os.getuid() == 0
items = json.load(sys.stdin)
for e in items:
    p = os.path.join(root, e["name"])
    t = e["type"]
    if t == "directory": os.mkdir(p)
    elif t == "file":
        with open(p, "wb") as f: f.write(bytes.fromhex(e["content"]))
    elif t == "symlink": os.symlink(e["linkname"], p)
    elif t == "link": os.link(os.path.join(root, e["linkname"]), p)
    elif t == "fifo": os.mkfifo(p)
    elif t in ("char", "block"):
        if not root_user: continue
        import stat
        os.mknod(p, (stat.S_IFCHR if t == "char" else stat.S_IFBLK) | 0o600, os.makedev(e["devmajor"], e["devminor"]))
    for k, v in e["xattrs"].items():
        if root_user or k.startswith("user."): os.setxattr(p, k, bytes.fromhex(v))
    if root_user: os.chown(p, e["uid"], e["gid"], follow_symlinks=False)
    if t not in ("symlink", "link"): os.chmod(p, e["mode"])
for e in reversed(items):  # children before parents: creating a child changes its directory's mtime
    p = os.path.join(root, e["name"])
    if e["type"] != "link" and os.path.lexists(p):
        ns = e["mtime"]["sec"] * 10**9 + e["mtime"]["nsec"]
        os.utime(p, ns=(ns, ns), follow_symlinks=False)
`;

/** Create the catalogue on disk under `root` (devices and ownership only as root), for GNU tar to archive. */
export function materialize(items: Item[], root: string): void {
  run("python3", ["-c", PY_MATERIALIZE, root], { input: specOf(items) });
}
