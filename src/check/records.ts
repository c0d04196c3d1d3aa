/**
 * The check of a `meta/` record store (`src/store/layer-records.ts`, vfs and btrfs) against the
 * layers on disk: records without their layer (dropped by the repair, as the driver's start-up
 * drops them), corrupt records, layers without a record, and parents that do not exist.
 */
import * as fs from "node:fs/promises";
import * as path from "node:path";
import { LAYER_ID_PATTERN } from "../core/layer-id.ts";
import { type BaseRecord, type RecordShape, parseRecord } from "../store/layer-records.ts";
import { entryKind, entryNames } from "./scan.ts";
import { type Finding, type Severity, finding } from "./types.ts";

/** What `checkRecords` compares. */
export interface RecordCheck<R extends BaseRecord> {
  /** The `meta/` directory. */
  dir: string;
  shape: RecordShape<R>;
  /** Every layer that exists (or will, once a repair found with it runs). */
  layers: ReadonlySet<string>;
  /** Where layer `id` is, for the findings about it. */
  layerPath: (id: string) => string;
  /** How a layer without a record is reported. */
  withoutRecord: { severity: Severity; message: string };
  /** Why a missing parent matters here, after "its parent … does not exist". */
  missingParent: string;
}

/**
 * Check the records in `c.dir`; returns the findings and the records that could be read.
 * @example
 * const { findings, records } = await checkRecords({ dir: path.join(home, "meta"), shape: PARENT_RECORD, … });
 */
export async function checkRecords<R extends BaseRecord>(c: RecordCheck<R>): Promise<{ findings: Finding[]; records: Map<string, R> }> {
  const out: Finding[] = [];
  const records = new Map<string, R>();
  for (const name of await entryNames(c.dir)) {
    const p = path.join(c.dir, name);
    if (!LAYER_ID_PATTERN.test(name) || entryKind(p) !== "file") {
      out.push(finding("problem", "foreign-entry", p, `an entry of ${path.basename(c.dir)}/ that is no layer record: left alone`));
      continue;
    }
    if (!c.layers.has(name)) {
      out.push(finding("problem", "record-without-layer", p, `the record of layer "${name}", which does not exist`, async () => {
        await fs.rm(p, { force: true });
        return "removed the record (it named only the missing layer's parent)";
      }));
      continue;
    }
    try {
      records.set(name, parseRecord(await fs.readFile(p, "utf8"), c.shape));
    } catch (err) {
      out.push(finding("problem", "corrupt-record", p, `layer "${name}"'s record cannot be read (${(err as Error).message}): its parent is unknown`));
    }
  }
  for (const id of c.layers) {
    const record = records.get(id);
    if (record === undefined && entryKind(path.join(c.dir, id)) === "missing") {
      out.push(finding(c.withoutRecord.severity, "layer-without-record", c.layerPath(id), c.withoutRecord.message));
    } else if (record !== undefined && record.parent !== "" && !c.layers.has(record.parent)) {
      out.push(finding("problem", "missing-parent", c.layerPath(id), `its parent "${record.parent}" does not exist (${c.missingParent})`));
    }
  }
  return { findings: out, records };
}
