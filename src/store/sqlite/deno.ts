/** The SQLite interface on Deno: `node:sqlite`. */
import { DatabaseSync } from "node:sqlite";
import { type NativeDatabase, type OpenDatabase, wrapDatabase } from "./types.ts";

/** Open `file` with node:sqlite. */
export const openDatabase: OpenDatabase = (file, opts) =>
  wrapDatabase(new DatabaseSync(file, opts?.readonly ? { readOnly: true } : undefined) as unknown as NativeDatabase);
