/** The SQLite interface on Bun: `bun:sqlite`. */
import { Database } from "bun:sqlite";
import { type OpenDatabase, wrapDatabase } from "./types.ts";

/** Open `file` with bun:sqlite. */
export const openDatabase: OpenDatabase = (file, opts) =>
  wrapDatabase(new Database(file, opts?.readonly ? { readonly: true, strict: true } : { create: true, strict: true }));
