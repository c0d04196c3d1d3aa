/**
 * The snapshotter's records in SQLite: key → driver layer id, parent, kind, labels, timestamps,
 * usage. Every change is one transaction. A row is inserted ("creating") before its layer is made
 * and deleted after its layer is gone ("removing"), so after a crash at any point the rows that are
 * not "ready" name exactly the layers to finish removing (`pending`).
 */
import { AlreadyExistsError, FailedPreconditionError, InvalidRequestError, NotFoundError } from "../core/errors.ts";
import type { SqlDatabase, SqlValue } from "../store/sqlite/types.ts";

/** containerd's snapshot kinds (the protocol's numbers). */
export const Kind = { View: 1, Active: 2, Committed: 3 } as const;
/** A snapshot kind. */
export type Kind = (typeof Kind)[keyof typeof Kind];

/** A point in time with nanoseconds, as protobuf's Timestamp. */
export interface Time {
  seconds: number;
  nanos: number;
}

/** What Stat and List return about a snapshot. */
export interface Info {
  /** The driver's layer id. */
  id: number;
  key: string;
  /** The parent's key, "" for none. */
  parent: string;
  kind: Kind;
  created: Time;
  updated: Time;
  labels: Record<string, string>;
  /** Recorded at Commit; null for active snapshots (measured live) and views. */
  usage: { size: number; inodes: number } | null;
}

const SCHEMA = `
CREATE TABLE IF NOT EXISTS snapshots (
  id INTEGER PRIMARY KEY AUTOINCREMENT,
  key TEXT UNIQUE,
  parent INTEGER,
  kind INTEGER NOT NULL,
  state TEXT NOT NULL,
  created_s INTEGER NOT NULL, created_ns INTEGER NOT NULL,
  updated_s INTEGER NOT NULL, updated_ns INTEGER NOT NULL,
  size INTEGER, inodes INTEGER
);
CREATE INDEX IF NOT EXISTS snapshots_parent ON snapshots(parent);
CREATE TABLE IF NOT EXISTS labels (
  id INTEGER NOT NULL REFERENCES snapshots(id) ON DELETE CASCADE,
  name TEXT NOT NULL,
  value TEXT NOT NULL,
  PRIMARY KEY (id, name)
);
`;

const READY = "ready";
const CREATING = "creating";
const REMOVING = "removing";

let _lastNs = 0n;
/** Now, strictly increasing within the process (two records never share a timestamp). */
function _now(): Time {
  let ns = BigInt(Math.round((performance.timeOrigin + performance.now()) * 1e6));
  if (ns <= _lastNs) ns = _lastNs + 1n;
  _lastNs = ns;
  return { seconds: Number(ns / 1_000_000_000n), nanos: Number(ns % 1_000_000_000n) };
}

/** The records of one snapshotter root. */
export class Metadata {
  #db: SqlDatabase;

  /** Open (or create) the records in `db`. */
  constructor(db: SqlDatabase) {
    this.#db = db;
    // WAL with synchronous=FULL: a transaction that returned is on disk (power loss included).
    db.exec("PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL; PRAGMA foreign_keys=ON; PRAGMA busy_timeout=5000;");
    db.exec(SCHEMA);
  }

  close(): void {
    this.#db.close();
  }

  #tx<T>(fn: () => T): T {
    this.#db.exec("BEGIN IMMEDIATE");
    try {
      const out = fn();
      this.#db.exec("COMMIT");
      return out;
    } catch (err) {
      this.#db.exec("ROLLBACK");
      throw err;
    }
  }

  #row(key: string): Record<string, SqlValue> | undefined {
    return this.#db.prepare("SELECT * FROM snapshots WHERE key = ? AND state = 'ready'").get(key);
  }

  /** A row as Info; `parentKey` and `labels` come from the caller when it read them in bulk (List). */
  #info(row: Record<string, SqlValue>, bulk?: { parentKey: string; labels: Record<string, string> }): Info {
    const id = Number(row.id);
    let parent = bulk?.parentKey;
    if (parent === undefined) {
      parent = row.parent === null ? "" : String(this.#db.prepare("SELECT key FROM snapshots WHERE id = ?").get(Number(row.parent))?.key ?? "");
    }
    let labels = bulk?.labels;
    if (labels === undefined) {
      labels = {};
      for (const l of this.#db.prepare("SELECT name, value FROM labels WHERE id = ? ORDER BY name").all(id)) labels[String(l.name)] = String(l.value);
    }
    return {
      id,
      key: String(row.key),
      parent,
      kind: Number(row.kind) as Kind,
      created: { seconds: Number(row.created_s), nanos: Number(row.created_ns) },
      updated: { seconds: Number(row.updated_s), nanos: Number(row.updated_ns) },
      labels,
      usage: row.size === null ? null : { size: Number(row.size), inodes: Number(row.inodes) },
    };
  }

  #setLabels(id: number, labels: Record<string, string>): void {
    this.#db.prepare("DELETE FROM labels WHERE id = ?").run(id);
    for (const [name, value] of Object.entries(labels)) {
      // containerd never returns a label with an empty value: setting one to "" deletes it.
      if (value !== "") this.#db.prepare("INSERT INTO labels (id, name, value) VALUES (?, ?, ?)").run(id, name, value);
    }
  }

  /** The snapshot `key`, or NotFoundError. */
  get(key: string): Info {
    const row = this.#row(key);
    if (!row) throw new NotFoundError(`Snapshot "${key}" does not exist`);
    return this.#info(row);
  }

  /**
   * Reserve `key` for a new view or active snapshot on `parent` (a committed snapshot's key, or "").
   * Returns the driver id to create and the parent's driver id (null for none).
   */
  beginCreate(key: string, parent: string, kind: Kind, labels: Record<string, string>): { id: number; parentId: number | null } {
    return this.#tx(() => {
      if (this.#db.prepare("SELECT 1 FROM snapshots WHERE key = ?").get(key)) throw new AlreadyExistsError(`Snapshot "${key}" already exists`);
      let parentId: number | null = null;
      if (parent !== "") {
        const p = this.#row(parent);
        if (!p) throw new NotFoundError(`Cannot create snapshot "${key}": parent "${parent}" does not exist`);
        if (Number(p.kind) !== Kind.Committed) throw new InvalidRequestError(`Cannot create snapshot "${key}": parent "${parent}" is not a committed snapshot`);
        parentId = Number(p.id);
      }
      const t = _now();
      const { lastInsertRowid: id } = this.#db
        .prepare("INSERT INTO snapshots (key, parent, kind, state, created_s, created_ns, updated_s, updated_ns) VALUES (?, ?, ?, ?, ?, ?, ?, ?)")
        .run(key, parentId, kind, CREATING, t.seconds, t.nanos, t.seconds, t.nanos);
      this.#setLabels(id, labels);
      return { id, parentId };
    });
  }

  /** The layer of a reserved snapshot exists: make it visible. */
  finishCreate(id: number): Info {
    this.#db.prepare("UPDATE snapshots SET state = ? WHERE id = ?").run(READY, id);
    return this.#info(this.#db.prepare("SELECT * FROM snapshots WHERE id = ?").get(id)!);
  }

  /** Creating the layer failed: forget the reservation. */
  abortCreate(id: number): void {
    this.#db.prepare("DELETE FROM snapshots WHERE id = ?").run(id);
  }

  /** Start removing `key`: refused while other snapshots are built on it. Returns its driver id. */
  beginRemove(key: string): number {
    return this.#tx(() => {
      const row = this.#row(key);
      if (!row) throw new NotFoundError(`Cannot remove snapshot "${key}": it does not exist`);
      const child = this.#db.prepare("SELECT key FROM snapshots WHERE parent = ? LIMIT 1").get(row.id);
      if (child) throw new FailedPreconditionError(`Cannot remove snapshot "${key}": snapshot "${child.key}" is built on it`);
      // The key is free at once; the row stays, keyless, until the layer is gone.
      this.#db.prepare("UPDATE snapshots SET key = NULL, state = ? WHERE id = ?").run(REMOVING, row.id);
      return Number(row.id);
    });
  }

  /** The layer of a removed snapshot is gone: drop its row. */
  finishRemove(id: number): void {
    this.#db.prepare("DELETE FROM snapshots WHERE id = ?").run(id);
  }

  /** The active snapshot `key`, checked for Commit; throws what Commit answers otherwise. */
  activeForCommit(key: string, name: string): Info {
    const info = this.get(key);
    if (info.kind !== Kind.Active) throw new FailedPreconditionError(`Cannot commit snapshot "${key}": it is not active`);
    if (this.#db.prepare("SELECT 1 FROM snapshots WHERE key = ?").get(name)) throw new AlreadyExistsError(`Cannot commit snapshot "${key}" as "${name}": "${name}" already exists`);
    return info;
  }

  /** Turn active `key` into committed `name` with `labels` (replacing its own) and its usage. */
  commit(key: string, name: string, labels: Record<string, string>, usage: { size: number; inodes: number }): Info {
    return this.#tx(() => {
      const info = this.activeForCommit(key, name);
      const t = _now();
      this.#db
        .prepare("UPDATE snapshots SET key = ?, kind = ?, created_s = ?, created_ns = ?, updated_s = ?, updated_ns = ?, size = ?, inodes = ? WHERE id = ?")
        .run(name, Kind.Committed, t.seconds, t.nanos, t.seconds, t.nanos, usage.size, usage.inodes, info.id);
      this.#setLabels(info.id, labels);
      return this.get(name);
    });
  }

  /**
   * containerd's Update: no paths (or "labels") replace every label, "labels.K" sets or (empty)
   * deletes K; any other path is refused.
   */
  update(key: string, labels: Record<string, string>, paths: readonly string[]): Info {
    return this.#tx(() => {
      const info = this.get(key);
      let next = { ...info.labels };
      if (paths.length === 0) next = { ...labels };
      for (const p of paths) {
        if (p === "labels") next = { ...labels };
        else if (p.startsWith("labels.")) {
          const k = p.slice("labels.".length);
          next[k] = labels[k] ?? "";
        } else {
          throw new InvalidRequestError(`Cannot update field "${p}" of snapshot "${key}": only labels can be updated`);
        }
      }
      const t = _now();
      this.#db.prepare("UPDATE snapshots SET updated_s = ?, updated_ns = ? WHERE id = ?").run(t.seconds, t.nanos, info.id);
      this.#setLabels(info.id, next);
      return this.get(key);
    });
  }

  /** Every visible snapshot. */
  list(): Info[] {
    // Two queries for the whole store, not two per row.
    const labels = new Map<number, Record<string, string>>();
    for (const l of this.#db.prepare("SELECT id, name, value FROM labels ORDER BY id, name").all()) {
      const id = Number(l.id);
      let m = labels.get(id);
      if (!m) labels.set(id, (m = {}));
      m[String(l.name)] = String(l.value);
    }
    return this.#db
      .prepare("SELECT s.*, p.key AS parent_key FROM snapshots s LEFT JOIN snapshots p ON p.id = s.parent WHERE s.state = 'ready' ORDER BY s.id")
      .all()
      .map((r) => this.#info(r, { parentKey: r.parent_key === null ? "" : String(r.parent_key), labels: labels.get(Number(r.id)) ?? {} }));
  }

  /** Rows a crash left half made or half removed: their layers are to be removed, then the rows. */
  pending(): number[] {
    return this.#db.prepare("SELECT id FROM snapshots WHERE state != 'ready' ORDER BY id DESC").all().map((r) => Number(r.id));
  }

  /** Every driver id a row names, in any state. */
  ids(): Set<number> {
    return new Set(this.#db.prepare("SELECT id FROM snapshots").all().map((r) => Number(r.id)));
  }
}
