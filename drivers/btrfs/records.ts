/**
 * btrfs's layer records, one file per layer in `meta/<id>`: the parent it was made on, whether it
 * is a container (read-write) layer, and its size limit. They live apart from the subvolume,
 * which is the layer's root. A record is written before its subvolume is renamed into place and
 * deleted after the subvolume is renamed away, so a crash can leave a record without a layer
 * (dropped by `load`) but never a layer without its record.
 */
import * as fs from "node:fs/promises";
import * as path from "node:path";
import { hasCode } from "../../src/core/errors.ts";
import { LAYER_ID_PATTERN, assertLayerId } from "../../src/core/layer-id.ts";
import type { Logger } from "../../src/core/log.ts";
import { ParentIndex } from "../../src/core/parent-index.ts";
import { ownEntry } from "../../src/store/own.ts";
import { writeFileDurable } from "../../src/store/durable.ts";
import type { Sys } from "../../src/sys/types.ts";

/** Where layer records live, under Home. */
export const META_DIR = "meta";

/** What `meta/<id>` holds. */
export interface LayerRecord {
  parent: string;
  /** A container layer (CreateReadWrite): never frozen read-only by strata. */
  readWrite: boolean;
  /** The qgroup limit of referenced bytes, 0 for none. */
  size: number;
}

/** The records on disk and, in memory, every existing layer's. */
export class LayerRecords {
  #dir: string;
  #log: Logger;
  #records = new Map<string, LayerRecord>();
  /** Parents and children, for Remove's refusal and Diff's default parent. */
  readonly index = new ParentIndex();

  #sys: Sys;

  constructor(home: string, sys: Sys, log: Logger) {
    this.#dir = path.join(home, META_DIR);
    this.#sys = sys;
    this.#log = log;
  }

  #file(id: string): string {
    assertLayerId(id);
    return path.join(this.#dir, id);
  }

  /** The record of `id`, or undefined (a layer whose record was lost or corrupt). */
  get(id: string): LayerRecord | undefined {
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
        const r = JSON.parse(await fs.readFile(file, "utf8")) as LayerRecord;
        if (typeof r.parent !== "string" || typeof r.readWrite !== "boolean" || typeof r.size !== "number") throw new TypeError("missing fields");
        this.#records.set(id, r);
        this.index.set(id, r.parent);
      } catch (err) {
        // Refusing to start over one record would take every layer down with it: the layer just loses its parent.
        this.#log.warn("ignoring a corrupt layer record", { id, err: String(err) });
      }
    }
  }

  /** Write the record of a layer about to be renamed into place, through `staging` (a fresh path in the temp dir). */
  async write(id: string, record: LayerRecord, staging: string): Promise<void> {
    await writeFileDurable(this.#sys, this.#file(id), JSON.stringify(record) + "\n", 0o600, staging);
  }

  /** The layer is in place: remember its record. */
  set(id: string, record: LayerRecord): void {
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
