/**
 * vfs's parent records: which layer each layer was created on, one file per layer in `meta/<id>`.
 * They live apart from `dir/<id>`, which is the layer's root: anything in it belongs to the
 * container. A record is written before its layer is renamed into place and deleted after the
 * layer is renamed away, so a crash can leave a record without a layer (dropped by `load`) but
 * never a layer without its record. Layers made before records existed have none: their parent
 * is unknown, and nothing stops their removal.
 */
import * as fs from "node:fs/promises";
import * as path from "node:path";
import { hasCode } from "../../src/core/errors.ts";
import { LAYER_ID_PATTERN, assertLayerId } from "../../src/core/layer-id.ts";
import type { Logger } from "../../src/core/log.ts";
import { ParentIndex } from "../../src/core/parent-index.ts";
import { writeFileDurable } from "../../src/store/durable.ts";
import { ownEntry } from "../../src/store/own.ts";
import type { Sys } from "../../src/sys/types.ts";

/** Where parent records live, under Home. */
export const META_DIR = "meta";

/** What `meta/<id>` holds. */
interface _Record {
  parent: string;
}

/** The records on disk and, in memory (`index`), the parent of every layer that has one. */
export class ParentRecords {
  #dir: string;
  #log: Logger;
  #sys: Sys;
  /** What the records say, for the layers that exist. */
  readonly index = new ParentIndex();

  constructor(home: string, sys: Sys, log: Logger) {
    this.#dir = path.join(home, META_DIR);
    this.#sys = sys;
    this.#log = log;
  }

  #file(id: string): string {
    assertLayerId(id);
    return path.join(this.#dir, id);
  }

  /** Read every record; delete those whose layer is gone (a crash inside Create or Remove). */
  async load(exists: (id: string) => Promise<boolean>): Promise<void> {
    this.index.clear();
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
        const record = JSON.parse(await fs.readFile(file, "utf8")) as _Record;
        if (typeof record.parent !== "string") throw new TypeError("no parent field");
        this.index.set(id, record.parent);
      } catch (err) {
        // Refusing to start over one record would take every layer down with it: the layer just loses its parent.
        this.#log.warn("ignoring a corrupt layer record", { id, err: String(err) });
      }
    }
  }

  /**
   * Write the record of a layer about to be renamed into place, through `staging` (a path in the
   * driver's temp dir, which a restart empties) so that no reader ever sees half a record.
   */
  async write(id: string, parent: string, staging: string): Promise<void> {
    const record: _Record = { parent };
    // Synced before and after its rename: the record outlives a power cut as the layer does.
    await writeFileDurable(this.#sys, this.#file(id), JSON.stringify(record) + "\n", 0o600, staging);
  }

  /** The layer is gone (renamed away, or never placed): forget it and delete its record. */
  async delete(id: string): Promise<void> {
    this.index.delete(id);
    await fs.rm(this.#file(id)).catch((err) => {
      if (!hasCode(err, "ENOENT")) this.#log.warn("remove left a layer record", { id, err: String(err) });
    });
  }
}
