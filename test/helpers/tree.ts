/** Test helpers: a full-fidelity snapshot of a directory tree, for comparing layers. */
import { createHash } from "node:crypto";
import * as fs from "node:fs";
import * as path from "node:path";
import type { Sys } from "../../src/sys/types.ts";

/** What a user could observe of one path. */
export interface NodeInfo {
  type: "file" | "dir" | "symlink" | "char" | "block" | "fifo" | "socket";
  mode: string;
  uid: number;
  gid: number;
  size?: number;
  mtimeNs?: string;
  rdev?: number;
  target?: string;
  sha256?: string;
  xattrs: Record<string, string>;
  /** Paths sharing this inode (hardlinks), sorted, when more than one. */
  links?: string[];
}

function _type(st: fs.BigIntStats): NodeInfo["type"] {
  if (st.isFile()) return "file";
  if (st.isDirectory()) return "dir";
  if (st.isSymbolicLink()) return "symlink";
  if (st.isCharacterDevice()) return "char";
  if (st.isBlockDevice()) return "block";
  if (st.isFIFO()) return "fifo";
  return "socket";
}

/**
 * Snapshot every path under `root` ("/" is the root itself). Directory mtimes are left out unless
 * asked for; `wholeSeconds` records mtimes cut to the second (what a layer tar carries, as moby's).
 */
export function snapshot(root: string, sys: Sys, opts: { dirMtimes?: boolean; wholeSeconds?: boolean } = {}): Record<string, NodeInfo> {
  const out: Record<string, NodeInfo> = {};
  const inodes = new Map<bigint, string[]>();
  const walk = (rel: string) => {
    const abs = path.join(root, rel);
    const st = fs.lstatSync(abs, { bigint: true });
    const type = _type(st);
    const xattrs: Record<string, string> = {};
    for (const name of sys.llistxattr(abs).sort()) xattrs[name] = Buffer.from(sys.lgetxattr(abs, name) ?? []).toString("hex");
    const info: NodeInfo = { type, mode: (Number(st.mode) & 0o7777).toString(8), uid: Number(st.uid), gid: Number(st.gid), xattrs };
    if (type !== "dir" || opts.dirMtimes) info.mtimeNs = String(opts.wholeSeconds ? (st.mtimeNs / 1_000_000_000n) * 1_000_000_000n : st.mtimeNs);
    if (type === "file") {
      info.size = Number(st.size);
      info.sha256 = createHash("sha256").update(fs.readFileSync(abs)).digest("hex");
      if (st.nlink > 1n) inodes.set(st.ino, [...(inodes.get(st.ino) ?? []), rel]);
    }
    if (type === "symlink") info.target = fs.readlinkSync(abs);
    if (type === "char" || type === "block") info.rdev = Number(st.rdev);
    out[rel] = info;
    if (type === "dir") for (const name of fs.readdirSync(abs).sort()) walk(rel === "/" ? `/${name}` : `${rel}/${name}`);
  };
  walk("/");
  for (const group of inodes.values()) {
    if (group.length > 1) for (const p of group) out[p].links = [...group].sort();
  }
  return out;
}
