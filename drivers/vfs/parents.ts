/**
 * vfs's layer records (`meta/<id>`, kept by `src/store/layer-records.ts`): the parent each layer
 * was created on, nothing else. Layers made before records existed have none: their parent is
 * unknown, and nothing stops their removal.
 */
import type { RecordShape } from "../../src/store/layer-records.ts";

/** What `meta/<id>` holds: `{"parent": "<id>"}`. */
export interface ParentRecord {
  parent: string;
}

/** The shape of a vfs record. */
export const PARENT_RECORD: RecordShape<ParentRecord> = (value) => {
  const r = value as Partial<ParentRecord> | null;
  if (typeof r?.parent !== "string") throw new TypeError("no parent field");
  return { parent: r.parent };
};
