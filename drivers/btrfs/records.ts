/**
 * btrfs's layer records (`meta/<id>`, kept by `src/store/layer-records.ts`): the parent a layer
 * was made on, whether it is a container (read-write) layer, and its size limit. The subvolume is
 * the layer's root; the record lives apart from it.
 */
import type { RecordShape } from "../../src/store/layer-records.ts";

/** What `meta/<id>` holds. */
export interface LayerRecord {
  parent: string;
  /** A container layer (CreateReadWrite): never frozen read-only by strata. */
  readWrite: boolean;
  /** The qgroup limit of referenced bytes, 0 for none. */
  size: number;
}

/** The shape of a btrfs record. */
export const LAYER_RECORD: RecordShape<LayerRecord> = (value) => {
  const r = value as Partial<LayerRecord> | null;
  const missing = [
    typeof r?.parent !== "string" ? "parent" : "",
    typeof r?.readWrite !== "boolean" ? "readWrite" : "",
    typeof r?.size !== "number" ? "size" : "",
  ].filter((f) => f !== "");
  if (missing.length > 0) throw new TypeError(`missing fields: ${missing.join(", ")}`);
  return r as LayerRecord;
};
