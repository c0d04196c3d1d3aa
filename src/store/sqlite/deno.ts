/** The SQLite interface on Deno: `node:sqlite`. */
import { DatabaseSync } from "node:sqlite";
import { type NativeDatabase, type OpenDatabase, wrapDatabase } from "./types.ts";

/** Open `file` with node:sqlite. */
export const openDatabase: OpenDatabase = (file) => wrapDatabase(new DatabaseSync(file) as unknown as NativeDatabase);
