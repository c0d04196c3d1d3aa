/**
 * Per-layer records, one JSON file per layer in `meta/<id>` (vfs's parent, btrfs's parent,
 * read-write flag and size limit): each driver gives the shape of its own record as a validator,
 * the store does the rest. Records live apart from the layer, whose directory is the container's.
 * A record is written before its layer is renamed into place and deleted after the layer is renamed
 * away, so a crash can leave a record without a layer (dropped by `load`), never the reverse.
 */
import * as fs from "node:fs/promises";
import * as path from "node:path";
import { hasCode } from "../core/errors.ts";
import { LAYER_ID_PATTERN, assertLayerId } from "../core/layer-id.ts";
import type { Logger } from "../core/log.ts";
import { ParentIndex } from "../core/parent-index.ts";
import type { Sys } from "../sys/types.ts";
import { writeFileDurable } from "./durable.ts";
import { ownEntry } from "./own.ts";

/** Where layer records live, under Home. */
export const META_DIR = "meta";

/** What every record holds: the layer it was created on ("" for a base layer). */
export interface BaseRecord {
  parent: string;
}

/**
 * A driver's record shape: returns the parsed JSON as its record, or throws a TypeError naming
 * what is missing.
 * @example
 * const shape: RecordShape<{ parent: string }> = (v) => {
 *   if (typeof (v as { parent?: unknown })?.parent !== "string") throw new TypeError("no parent field");
 *   return v as { parent: string };
 * };
 */
export type RecordShape<R extends BaseRecord> = (value: unknown) => R;

/** The record in `text` (a `meta/<id>` file's content), checked against `shape`; throws when it is none. */
export function parseRecord<R extends BaseRecord>(text: string, shape: RecordShape<R>): R {
  return shape(JSON.parse(text));
}

/**
 * The records on disk and, in memory, every existing layer's, with the parent index built from them.
 * @example
 * const records = new LayerRecords(home, sys, log, vfsRecord);
 * await records.load((id) => driver.exists(id));
 */
export class LayerRecords<R extends BaseRecord> {
  #dir: string;
  #log: Logger;
  #sys: Sys;
  #shape: RecordShape<R>;
  #records = new Map<string, R>();
  /** Parents and children, for Remove's refusal and Diff's default parent. */
  readonly index = new ParentIndex();

  constructor(home: string, sys: Sys, log: Logger, shape: RecordShape<R>) {
    this.#dir = path.join(home, META_DIR);
    this.#sys = sys;
    this.#log = log;
    this.#shape = shape;
  }

  #file(id: string): string {
    assertLayerId(id);
    return path.join(this.#dir, id);
  }

  /** The record of `id`, or undefined (a layer whose record was lost or corrupt). */
  get(id: string): R | undefined {
    return this.#records.get(id);
  }

  /** Read every record; delete those whose layer is gone (a crash inside Create or Remove). */
  async load(exists: (id: string) => Promise<boolean>): Promise<void> {
    this.index.clear();
    this.#records.clear();
    for (const id of await fs.readdir(this.#dir)) {
      const file = path.join(this.#dir, id);
      if (!LAYER_ID_PATTERN.test(id) || (await ownEntry(file, "file")) !== "ok") {
        this.#log.warn("ignoring an entry of meta/ that is no layer record: left alone", { name: id.slice(0, 80) });
        continue;
      }
      if (!(await exists(id))) {
        await fs.rm(file, { force: true });
        this.#log.info("dropped the record of a missing layer", { id });
        continue;
      }
      try {
        this.set(id, parseRecord(await fs.readFile(file, "utf8"), this.#shape));
      } catch (err) {
        // Refusing to start over one record would take every layer down with it: the layer just loses its parent.
        this.#log.warn("ignoring a corrupt layer record", { id, err: String(err) });
      }
    }
  }

  /**
   * Write the record of a layer about to be renamed into place, through `staging` (a fresh path in
   * the driver's temp dir, which a restart empties) so that no reader ever sees half a record.
   */
  async write(id: string, record: R, staging: string): Promise<void> {
    // Synced before and after its rename: the record outlives a power cut as the layer does.
    await writeFileDurable(this.#sys, this.#file(id), JSON.stringify(record) + "\n", 0o600, staging);
  }

  /** The layer is in place: remember its record. */
  set(id: string, record: R): void {
    this.#records.set(id, record);
    this.index.set(id, record.parent);
  }

  /** The layer is gone (renamed away, or never placed): forget it and delete its record. */
  async delete(id: string): Promise<void> {
    this.#records.delete(id);
    this.index.delete(id);
    await fs.rm(this.#file(id)).catch((err) => {
      if (!hasCode(err, "ENOENT")) this.#log.warn("remove left a layer record", { id, err: String(err) });
    });
  }
}
