/**
 * The power-cut test's model, shared by the guest's load and check programs: what each layer holds
 * (a pure function of its name, so the checker can rebuild every expected byte), the log lines the
 * load prints for each call strata acknowledged, and what a log says must be on disk after the cut.
 */

/** One call of the load, as logged: `PC <seq> BEGIN|ACK <op> <id> <parent>`. */
export interface LoggedOp {
  seq: number;
  op: "create" | "apply" | "rw" | "remove" | "prepare" | "commit";
  id: string;
  parent: string;
}

/** The prefix of every line the load prints about a call. */
export const LOG_PREFIX = "PC ";

/** The line for `op` at `stage`. */
export function logLine(stage: "BEGIN" | "ACK", op: LoggedOp): string {
  return `${LOG_PREFIX}${op.seq} ${stage} ${op.op} ${op.id} ${op.parent || "-"}`;
}

/** A small deterministic PRNG (mulberry32). */
export function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

function _hash(s: string): number {
  let h = 2166136261;
  for (let i = 0; i < s.length; i++) h = Math.imul(h ^ s.charCodeAt(i), 16777619);
  return h >>> 0;
}

/**
 * The files layer `id` adds: 1 to 6 files of up to 96 KiB under `<id>/`, and `top` naming the layer
 * (each layer overwrites its parent's), every byte derived from the name.
 */
export function layerFiles(id: string): Map<string, Uint8Array> {
  const rnd = prng(_hash(id));
  const files = new Map<string, Uint8Array>();
  const count = 1 + Math.floor(rnd() * 6);
  for (let j = 0; j < count; j++) {
    const size = Math.floor(rnd() * rnd() * 96 * 1024);
    const bytes = new Uint8Array(size);
    for (let k = 0; k < size; k++) bytes[k] = (k * 31 + j * 7 + _hash(id)) & 0xff;
    files.set(`${id}/f${j}`, bytes);
  }
  files.set("top", new TextEncoder().encode(`${id}\n`));
  return files;
}

/** What the log says: the layers that must exist, their parents, and which ones hold their files. */
export interface Expected {
  /** id → parent ("" for a base layer), for every layer whose creation was acknowledged and not removed. */
  layers: Map<string, string>;
  /** Layers whose ApplyDiff (or snapshot Commit) was acknowledged. */
  filled: Set<string>;
  /** Layers whose Remove was acknowledged. */
  removed: Set<string>;
  /** The call begun and not acknowledged when the power went, if any: either outcome is allowed. */
  inFlight?: LoggedOp;
  acknowledged: number;
}

/** Read the load's log: every ACK line counts; a BEGIN with no ACK after it is the call in flight. */
export function expectedFrom(lines: readonly string[]): Expected {
  const exp: Expected = { layers: new Map(), filled: new Set(), removed: new Set(), acknowledged: 0 };
  let begun: LoggedOp | undefined;
  for (const line of lines) {
    const m = /^PC (\d+) (BEGIN|ACK) (\w+) (\S+) (\S+)$/.exec(line.trim());
    if (!m) continue;
    const op: LoggedOp = { seq: Number(m[1]), op: m[3] as LoggedOp["op"], id: m[4], parent: m[5] === "-" ? "" : m[5] };
    if (m[2] === "BEGIN") {
      begun = op;
      continue;
    }
    begun = undefined;
    exp.acknowledged++;
    if (op.op === "create" || op.op === "rw" || op.op === "prepare") exp.layers.set(op.id, op.parent);
    else if (op.op === "apply" || op.op === "commit") exp.filled.add(op.id);
    else if (op.op === "remove") {
      exp.layers.delete(op.id);
      exp.filled.delete(op.id);
      exp.removed.add(op.id);
    }
  }
  exp.inFlight = begun;
  return exp;
}

/** The files a mount of `id` shows: its chain's files, the nearest filled layer's `top`. */
export function viewOf(id: string, parents: ReadonlyMap<string, string>, filled: ReadonlySet<string>): Map<string, Uint8Array> {
  const chain: string[] = [];
  for (let at = id; at !== ""; at = parents.get(at) ?? "") chain.unshift(at);
  const out = new Map<string, Uint8Array>();
  for (const layer of chain) if (filled.has(layer)) for (const [name, bytes] of layerFiles(layer)) out.set(name, bytes);
  return out;
}
